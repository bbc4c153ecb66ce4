//! `--set target.key=value` overrides applied to any serde config, with errors
//! that name the key and what it accepts.

use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown key `{key}`; allowed keys: {allowed}")]
    UnknownKey { key: String, allowed: String },
    #[error("bad value `{value}` for `{key}`: {reason}")]
    BadValue { key: String, value: String, reason: String },
    #[error("`--set {0}`: expected target.key=value")]
    Syntax(String),
    #[error("unknown target `{name}`; targets: {allowed}")]
    UnknownTarget { name: String, allowed: String },
    #[error("unknown {what} `{name}`; allowed: {allowed}")]
    UnknownName { what: &'static str, name: String, allowed: String },
    #[error("{0}")]
    Invalid(String),
}

/// One parsed `--set`: target, key, raw value.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub target: String,
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let (path, value) = s.split_once('=').ok_or_else(|| ConfigError::Syntax(s.into()))?;
        let (target, key) = path.split_once('.').ok_or_else(|| ConfigError::Syntax(s.into()))?;
        if target.is_empty() || key.is_empty() {
            return Err(ConfigError::Syntax(s.into()));
        }
        Ok(Override { target: target.trim().into(), key: key.trim().into(), value: value.trim().into() })
    }
}

/// Set `key` of `cfg` to `value`, parsed as the type the key already holds.
pub fn apply<T: Serialize + DeserializeOwned>(cfg: &T, target: &str, key: &str, value: &str) -> Result<T, ConfigError> {
    let mut v = serde_json::to_value(cfg).expect("configs serialise");
    let map = v.as_object_mut().expect("configs are structs");
    let full = format!("{target}.{key}");
    let Some(old) = map.get(key) else {
        let allowed = map.keys().map(|k| format!("{target}.{k}")).collect::<Vec<_>>().join(", ");
        return Err(ConfigError::UnknownKey { key: full, allowed });
    };
    let bad = |reason: String| ConfigError::BadValue { key: full.clone(), value: value.into(), reason };
    let new = match old {
        serde_json::Value::Bool(_) => {
            serde_json::Value::Bool(value.parse().map_err(|_| bad("expected true or false".into()))?)
        }
        serde_json::Value::Number(n) if n.is_u64() => {
            serde_json::Value::from(value.parse::<u64>().map_err(|_| bad("expected a non-negative integer".into()))?)
        }
        serde_json::Value::Number(_) => {
            let x: f64 = value.parse().map_err(|_| bad("expected a number".into()))?;
            if !x.is_finite() {
                return Err(bad("expected a finite number".into()));
            }
            serde_json::Value::from(x)
        }
        _ => serde_json::Value::String(value.into()),
    };
    map.insert(key.into(), new);
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Gate {
        Softmax,
        Sigmoid,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Cfg {
        experts: usize,
        eps: f32,
        gate: Gate,
    }

    const C: Cfg = Cfg { experts: 64, eps: 1e-5, gate: Gate::Softmax };

    #[test]
    fn sets_typed_values() {
        let c = apply(&C, "moe", "experts", "8").unwrap();
        assert_eq!(c.experts, 8);
        assert_eq!(apply(&C, "moe", "gate", "sigmoid").unwrap().gate, Gate::Sigmoid);
        assert_eq!(apply(&C, "moe", "eps", "0.5").unwrap().eps, 0.5);
    }

    #[test]
    fn errors_name_key_and_allowed_values() {
        let e = apply(&C, "moe", "expert", "8").unwrap_err().to_string();
        assert!(
            e.contains("moe.expert") && e.contains("moe.experts, moe.eps, moe.gate") || e.contains("moe.experts"),
            "{e}"
        );
        let e = apply(&C, "moe", "experts", "-3").unwrap_err().to_string();
        assert!(e.contains("moe.experts") && e.contains("non-negative integer"), "{e}");
        let e = apply(&C, "moe", "gate", "relu").unwrap_err().to_string();
        assert!(e.contains("moe.gate") && e.contains("softmax") && e.contains("sigmoid"), "{e}");
    }

    #[test]
    fn parses_override_syntax() {
        let o: Override = "moe.top_k=6".parse().unwrap();
        assert_eq!(o, Override { target: "moe".into(), key: "top_k".into(), value: "6".into() });
        assert!("top_k=6".parse::<Override>().is_err());
        assert!("moe.top_k".parse::<Override>().is_err());
    }
}
