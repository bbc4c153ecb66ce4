//! The results file (`--output`, default results/<run id>.jsonl): JSON Lines, appended.
//!
//! An existing file is never truncated: a run adds its records after the ones already there
//! (each line carries its `run_id`), so a rerun with the same `--output` cannot wipe earlier
//! results, and a run that fails early leaves the file as it was. Each batch of records is
//! serialised first and written with one `write_all`; when that fails (a full disk) the file is
//! cut back to its length before the write, so it never ends in a partial line.

use super::{Error, io};
use crate::harness::record::Record;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Something lines are appended to that can be cut back to an earlier length.
pub(crate) trait Sink: Write {
    fn len(&self) -> std::io::Result<u64>;
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl Sink for File {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// One JSON object per line, all records in one buffer.
pub(crate) fn lines(records: &[Record]) -> Vec<u8> {
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).expect("records serialise");
        buf.push(b'\n');
    }
    buf
}

/// Appends `buf` whole, or leaves the sink at its old length and returns the error.
pub(crate) fn append_whole(sink: &mut impl Sink, buf: &[u8]) -> std::io::Result<()> {
    let before = sink.len()?;
    match sink.write_all(buf).and_then(|()| sink.flush()) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Best effort: a device such as /dev/full cannot be cut, and has nothing to cut.
            if let Err(t) = sink.truncate(before) {
                tracing::debug!("could not cut the results file back to {before} bytes: {t}");
            }
            Err(e)
        }
    }
}

/// Every rank's records gathered on rank 0, and whether they all reached the results file.
pub(super) type Gathered = (Vec<Record>, Result<(), Error>);

/// Rank 0's results file. A failed write does not stop the run: the records stay in memory for
/// the table, and `finish` reports the first failure afterwards.
pub struct Results {
    path: PathBuf,
    file: File,
    failed: Option<std::io::Error>,
}

impl Results {
    /// Opens (creating it and its folder if missing) for appending, before anything is timed, so a
    /// path that cannot be written is refused up front.
    pub fn open(path: &Path) -> Result<Results, Error> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(&p))?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(&p))?;
        // A file whose last line lacks its newline (another writer, a crash) gets one first, so our
        // first record starts a line of its own.
        if needs_newline(path).map_err(io(&p))? {
            append_whole(&mut file, b"\n").map_err(io(&p))?;
        }
        Ok(Results { path: path.to_path_buf(), file, failed: None })
    }

    pub fn append(&mut self, records: &[Record]) {
        if self.failed.is_some() || records.is_empty() {
            return;
        }
        if let Err(e) = append_whole(&mut self.file, &lines(records)) {
            // The OS error itself is reported once, by `finish`, after the table.
            tracing::warn!("{}: writing failed; the records are kept for the table", self.path.display());
            self.failed = Some(e);
        }
    }

    /// The first write error, if any.
    pub fn finish(self) -> Result<(), Error> {
        match self.failed {
            None => Ok(()),
            Some(e) => Err(Error::Io { path: self.path.display().to_string(), source: e }),
        }
    }
}

fn needs_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with `room` bytes left: writes fill it, then fail like ENOSPC.
    struct Disk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink for Disk {
        fn len(&self) -> std::io::Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            self.room += self.data.len() - len as usize;
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_leaves_no_partial_line() {
        let mut disk = Disk { data: b"{\"old\":1}\n".to_vec(), room: 15 };
        // Fits: written whole.
        append_whole(&mut disk, b"{\"a\":1}\n").unwrap();
        assert_eq!(disk.data, b"{\"old\":1}\n{\"a\":1}\n");
        // 7 bytes left, 12 to write: the write fails and the file is as it was.
        let e = append_whole(&mut disk, b"{\"b\":22222}\n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(disk.data, b"{\"old\":1}\n{\"a\":1}\n");
        assert_eq!(disk.room, 7);
    }

    fn record(run_id: &str) -> Record {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/record.json")).expect("fixture parses");
        v["run_id"] = run_id.into();
        serde_json::from_value(v).expect("fixture is a record")
    }

    #[test]
    fn an_existing_file_is_appended_to_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/r.jsonl");
        let mut r = Results::open(&path).unwrap();
        r.append(&[record("one"), record("one")]);
        r.finish().unwrap();
        // A later run with the same --output, after a line that lost its newline.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"torn\":").unwrap();
        let mut r = Results::open(&path).unwrap();
        r.append(&[record("two")]);
        r.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("\"run_id\":\"one\"") && lines[1].contains("\"run_id\":\"one\""));
        assert_eq!(lines[2], "{\"torn\":");
        assert!(lines[3].contains("\"run_id\":\"two\""), "{text}");
    }

    #[test]
    fn a_failed_write_is_reported_by_finish() {
        let Ok(mut r) = Results::open(Path::new("/dev/full")) else {
            return eprintln!("SKIPPED: no /dev/full");
        };
        r.append(&[record("x")]);
        let e = r.finish().unwrap_err().to_string();
        assert!(e.starts_with("/dev/full: ") && e.contains("No space left"), "{e}");
    }
}
