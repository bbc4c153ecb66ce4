//! Prompts as token ids: a checkpoint's tokenizer.json through Hugging Face's
//! `tokenizers` crate (special tokens added as transformers adds them, so Llama 3
//! prompts start with <|begin_of_text|>), or ids typed by hand when there is none.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tokenizer: {path}: {msg}")]
    Load { path: String, msg: String },
    #[error("prompt: {0}")]
    Prompt(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl From<Error> for crate::backend::Error {
    fn from(e: Error) -> Self {
        crate::backend::Error::Load(Box::new(e))
    }
}

impl From<Error> for crate::config::ConfigError {
    fn from(e: Error) -> Self {
        crate::config::ConfigError::Invalid(e.to_string())
    }
}

pub struct Tokenizer(tokenizers::Tokenizer);

impl Tokenizer {
    /// `dir/tokenizer.json`, or None when the directory has none.
    pub fn load(dir: &Path) -> Result<Option<Tokenizer>, Error> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Ok(None);
        }
        let t = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Load { path: path.display().to_string(), msg: e.to_string() })?;
        Ok(Some(Tokenizer(t)))
    }

    /// Ids of `text` with the tokenizer's special tokens (BOS), as `tokenizer(text)` gives in Python.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self.0.encode(text, true).map_err(|e| Error::Prompt(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of one token (byte-level pieces decoded; may be a partial UTF-8 character).
    pub fn token_text(&self, id: u32) -> String {
        self.0.decode(&[id], false).unwrap_or_default()
    }
}

/// Token ids typed by hand: integers separated by spaces or commas.
pub fn parse_ids(text: &str) -> Result<Vec<u32>, String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().map_err(|_| format!("`{s}` is not a token id")))
        .collect()
}

/// The prompt's token ids: through `dir`'s tokenizer.json when there is one, else
/// read as ids. Every id must be below `vocab`.
pub fn prompt_ids(prompt: &str, dir: Option<&Path>, vocab: usize) -> Result<(Vec<u32>, Option<Tokenizer>), Error> {
    let tok = match dir {
        Some(d) => Tokenizer::load(d)?,
        None => None,
    };
    let ids = match &tok {
        Some(t) => t.encode(prompt)?,
        None => parse_ids(prompt).map_err(|e| {
            let whose =
                dir.map_or("without --weights".to_string(), |d| format!("{} has no tokenizer.json", d.display()));
            Error::Prompt(format!("{whose}, so the prompt must be token ids like `1 2 3` ({e})"))
        })?,
    };
    if ids.is_empty() {
        return Err(Error::Prompt("no tokens".into()));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::Prompt(format!("token id {bad} is outside the vocabulary ({vocab})")));
    }
    Ok((ids, tok))
}

/// The text of `--prompt-file`.
pub fn read_prompt_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|source| Error::Io { path: format!("prompt file {}", path.display()), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_by_hand() {
        assert_eq!(parse_ids("128000 791, 6864\n").unwrap(), vec![128000, 791, 6864]);
        assert_eq!(parse_ids("1 x").unwrap_err(), "`x` is not a token id");
        let e = prompt_ids("hello", None, 10).err().unwrap().to_string();
        assert!(e.starts_with("prompt: without --weights") && e.contains("`hello`"), "{e}");
        let e = prompt_ids("3 12", None, 10).err().unwrap().to_string();
        assert!(e.contains("token id 12 is outside the vocabulary (10)"), "{e}");
        assert!(prompt_ids(" ", None, 10).is_err());
    }
}
