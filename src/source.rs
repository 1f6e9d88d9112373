//! Opens the bytes of an import: a file or standard input. Counts the bytes read (for the
//! progress bar and the task's metadata) and caps how long one record may grow, so that an
//! unclosed quote in a huge file fails cleanly instead of filling memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// No single record may span more bytes than this.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const BUFFER_BYTES: usize = 256 * 1024;

/// Where an import reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Stdin,
    File(PathBuf),
}

impl SourceSpec {
    /// `-` is standard input; anything else a path.
    pub fn parse(arg: &str) -> SourceSpec {
        if arg == "-" {
            SourceSpec::Stdin
        } else {
            SourceSpec::File(PathBuf::from(arg))
        }
    }

    /// What the task records as its file_url: an absolute path, so that `run <task-id>` works
    /// from any folder, or `-` for standard input.
    pub fn to_file_url(&self) -> Result<String> {
        match self {
            SourceSpec::Stdin => Ok("-".into()),
            SourceSpec::File(path) => {
                let abs =
                    std::path::absolute(path).with_context(|| format!("resolving the path {}", path.display()))?;
                Ok(abs.to_string_lossy().into_owned())
            }
        }
    }

    pub fn from_file_url(url: &str) -> SourceSpec {
        SourceSpec::parse(url)
    }

    /// The name used in messages: the path as given, or `<stdin>`.
    pub fn display_name(&self) -> String {
        match self {
            SourceSpec::Stdin => "<stdin>".into(),
            SourceSpec::File(p) => p.display().to_string(),
        }
    }

    pub fn extension(&self) -> Option<String> {
        match self {
            SourceSpec::Stdin => None,
            SourceSpec::File(p) => p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()),
        }
    }
}

/// Shared counters between the reading thread and whoever shows progress.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Bytes handed to the parser so far.
    pub bytes_read: AtomicU64,
    /// Where the record being read started, in bytes.
    pub record_start: AtomicU64,
}

/// An opened source: buffered bytes with the byte-order mark removed.
pub struct OpenSource {
    pub reader: Box<dyn BufRead + Send>,
    /// Bytes in the input when known up front (a regular file).
    pub size: Option<u64>,
    pub counters: Arc<ReadCounters>,
}

pub fn open(spec: &SourceSpec) -> Result<OpenSource> {
    let (inner, size): (Box<dyn Read + Send>, Option<u64>) = match spec {
        SourceSpec::Stdin => (Box::new(io::stdin()), None),
        SourceSpec::File(path) => {
            let file = open_file(path)?;
            let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                anyhow::bail!("{} is a folder, not a file", path.display());
            }
            let size = meta.is_file().then_some(meta.len());
            (Box::new(file), size)
        }
    };
    let counters = Arc::new(ReadCounters::default());
    let guarded = Guarded {
        inner,
        counters: Arc::clone(&counters),
    };
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, guarded);
    skip_bom(&mut reader).with_context(|| format!("reading {}", spec.display_name()))?;
    Ok(OpenSource {
        reader: Box::new(reader),
        size,
        counters,
    })
}

/// Opens a file to continue reading at `offset` bytes after its byte-order mark, where a
/// checkpoint says the next record starts.
pub fn open_at(spec: &SourceSpec, offset: u64) -> Result<OpenSource> {
    let SourceSpec::File(path) = spec else {
        anyhow::bail!("standard input cannot be read again from the middle");
    };
    let mut file = open_file(path)?;
    let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let mut head = [0u8; 3];
    let n = read_up_to(&mut file, &mut head).with_context(|| format!("reading {}", path.display()))?;
    let bom = if head[..n] == *UTF8_BOM {
        UTF8_BOM.len() as u64
    } else {
        0
    };
    file.seek(SeekFrom::Start(bom + offset))
        .with_context(|| format!("seeking to byte {offset} of {}", path.display()))?;
    let counters = Arc::new(ReadCounters::default());
    counters.bytes_read.store(offset, Ordering::Relaxed);
    counters.record_start.store(offset, Ordering::Relaxed);
    let guarded = Guarded {
        inner: Box::new(file),
        counters: Arc::clone(&counters),
    };
    Ok(OpenSource {
        reader: Box::new(BufReader::with_capacity(BUFFER_BYTES, guarded)),
        size,
        counters,
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// What identifies a file's content cheaply: its size and modification time. A checkpoint is
/// only used while these are unchanged.
pub fn fingerprint(spec: &SourceSpec) -> Option<(u64, i64)> {
    let SourceSpec::File(path) = spec else { return None };
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((meta.len(), mtime.as_nanos() as i64))
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

/// Drops a UTF-8 byte-order mark at the very start, as FlexPrice does.
fn skip_bom<R: BufRead>(reader: &mut R) -> io::Result<()> {
    let buf = reader.fill_buf()?;
    if buf.starts_with(UTF8_BOM) {
        reader.consume(UTF8_BOM.len());
    }
    Ok(())
}

/// Counts bytes and refuses to let one record grow past `MAX_RECORD_BYTES`.
struct Guarded {
    inner: Box<dyn Read + Send>,
    counters: Arc<ReadCounters>,
}

impl Read for Guarded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.counters.bytes_read.load(Ordering::Relaxed);
        let start = self.counters.record_start.load(Ordering::Relaxed);
        // The parser reads ahead by at most one buffer, so allow for that before refusing.
        if read.saturating_sub(start) > MAX_RECORD_BYTES + 2 * BUFFER_BYTES as u64 {
            return Err(io::Error::other(RecordTooLong { start }));
        }
        let n = self.inner.read(buf)?;
        self.counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a record starting at byte {start} is longer than {} MiB (an unclosed quote or a missing line break?)", MAX_RECORD_BYTES / (1024 * 1024))]
pub struct RecordTooLong {
    pub start: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_dropped_once() {
        let mut r = io::Cursor::new(b"\xEF\xBB\xBFa,b\n\xEF\xBB\xBF".to_vec());
        skip_bom(&mut r).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"a,b\n\xEF\xBB\xBF");
    }

    #[test]
    fn a_record_may_not_grow_without_end() {
        let counters = Arc::new(ReadCounters::default());
        let endless = io::repeat(b'x').take(MAX_RECORD_BYTES * 2);
        let mut g = Guarded {
            inner: Box::new(endless),
            counters,
        };
        let err = io::copy(&mut g, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("longer than 64 MiB"), "{err}");
    }
}
