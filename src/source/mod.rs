//! Opens the bytes of an import: a file, standard input or an http(s) URL, gzip- or
//! zstd-compressed or not. Counts the bytes read (for the progress bar and the task's
//! metadata) and caps how long one record may grow, so that an unclosed quote in a huge file
//! fails cleanly instead of filling memory.

pub mod charset;
pub mod guard;
pub mod http;
pub mod links;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use self::charset::Charset;

/// No single record may span more bytes than this.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

const BUFFER_BYTES: usize = 256 * 1024;
const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const ZSTD_MAGIC: &[u8] = b"\x28\xb5\x2f\xfd";

/// Where an import reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Stdin,
    File(PathBuf),
    /// An http(s) URL as given (share links already made direct); it may carry credentials,
    /// which are never shown or stored. A task created over the HTTP API carries the guard
    /// its download must pass.
    Url(String, Option<guard::Guard>),
}

impl SourceSpec {
    /// `-` is standard input, `http://` and `https://` a URL, anything else a path.
    pub fn parse(arg: &str) -> SourceSpec {
        let lower = arg.trim_start().to_ascii_lowercase();
        if arg == "-" {
            SourceSpec::Stdin
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            SourceSpec::Url(links::direct_download(arg.trim()), None)
        } else {
            SourceSpec::File(PathBuf::from(arg))
        }
    }

    /// What the task records as its file_url: an absolute path, so that `run <task-id>` works
    /// from any folder; a URL without its credentials; or `-` for standard input.
    pub fn to_file_url(&self) -> Result<String> {
        match self {
            SourceSpec::Stdin => Ok("-".into()),
            SourceSpec::Url(url, _) => Ok(links::redact(url)),
            SourceSpec::File(path) => {
                let abs =
                    std::path::absolute(path).with_context(|| format!("resolving the path {}", path.display()))?;
                Ok(abs.to_string_lossy().into_owned())
            }
        }
    }

    /// A task's input: its file_url, with the download guard of a task created over HTTP.
    pub fn of_task(file_url: &str, guard: Option<&guard::Guard>) -> SourceSpec {
        match SourceSpec::parse(file_url) {
            SourceSpec::Url(url, _) => SourceSpec::Url(url, guard.cloned()),
            other => other,
        }
    }

    /// The name used in messages: the path as given, the URL without credentials, or
    /// `<stdin>`.
    pub fn display_name(&self) -> String {
        match self {
            SourceSpec::Stdin => "<stdin>".into(),
            SourceSpec::File(p) => p.display().to_string(),
            SourceSpec::Url(url, _) => links::redact(url),
        }
    }

    /// The file's name: its path's last part, or the URL path's.
    pub fn file_name(&self) -> Option<String> {
        match self {
            SourceSpec::Stdin => None,
            SourceSpec::File(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            SourceSpec::Url(url, _) => reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.path_segments()?.next_back().map(str::to_owned))
                .filter(|n| !n.is_empty()),
        }
    }

    /// The extension that tells the format, after a compression extension: `csv` for
    /// `usage.csv.gz`.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name()?.to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        let (_, ext) = name.rsplit_once('.')?;
        Some(ext.to_owned())
    }
}

/// Shared counters between the reading thread and whoever shows progress.
#[derive(Debug, Default)]
pub struct ReadCounters {
    /// Bytes handed to the parser so far (after decompression).
    pub bytes_read: AtomicU64,
    /// Where the record being read started, in bytes.
    pub record_start: AtomicU64,
    /// Bytes of the input itself read so far (before decompression): progress against its
    /// size.
    pub input_bytes: AtomicU64,
    /// Records the reader has handed on in this run (the reading thread counts them; they may
    /// be ahead of what is committed): the "read so far" of live progress.
    pub records_read: AtomicU64,
}

/// How a run got back to its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeMethod {
    /// A seek in the file.
    Seek,
    /// An HTTP Range request from the checkpoint.
    Range,
    /// Reading from the start again (decompressing, downloading) and skipping.
    Reread,
}

impl ResumeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeMethod::Seek => "seek",
            ResumeMethod::Range => "range",
            ResumeMethod::Reread => "reread",
        }
    }
}

/// An opened source: buffered UTF-8 text, with the byte-order mark removed and decoded from
/// the input's encoding where that is another.
pub struct OpenSource {
    pub reader: Box<dyn BufRead + Send>,
    /// The input's encoding: declared, told by a byte-order mark, or UTF-8.
    pub charset: Charset,
    /// Bytes in the input when known up front (a regular file, a download with a length).
    pub size: Option<u64>,
    pub counters: Arc<ReadCounters>,
    /// What identifies this content: size and modification time (files) or length and
    /// validator (downloads). A checkpoint is used only while it is unchanged.
    pub fingerprint: Option<(u64, i64)>,
    /// The input was compressed (gzip or zstd).
    pub compressed: bool,
    /// For a download: whether the server takes Range requests.
    pub ranges: Option<bool>,
    /// For a source opened at a checkpoint: how it got there.
    pub resumed_by: Option<ResumeMethod>,
}

/// The raw bytes of a source before decompression, and what is known of them.
pub struct Raw {
    read: Box<dyn Read + Send>,
    size: Option<u64>,
    fingerprint: Option<(u64, i64)>,
    ranges: Option<bool>,
    /// Where in the raw bytes `read` starts.
    at: u64,
}

/// Opens a source from its start; `declared` is the encoding `--encoding` named.
pub fn open(spec: &SourceSpec, declared: Option<Charset>) -> Result<OpenSource> {
    let raw = match spec {
        SourceSpec::Stdin => Raw {
            read: Box::new(io::stdin()),
            size: None,
            fingerprint: None,
            ranges: None,
            at: 0,
        },
        SourceSpec::File(path) => {
            let file = open_file(path)?;
            let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
            if meta.is_dir() {
                anyhow::bail!("{} is a folder, not a file", path.display());
            }
            Raw {
                read: Box::new(file),
                size: meta.is_file().then_some(meta.len()),
                fingerprint: fingerprint_of(&meta),
                ranges: None,
                at: 0,
            }
        }
        SourceSpec::Url(url, guard) => http::open(url, None, guard.as_ref())?.into_raw(),
    };
    let (size, fingerprint, ranges) = (raw.size, raw.fingerprint, raw.ranges);
    let (decompressed, compressed, counters) = decode(raw, spec)?;
    let (text, charset) =
        charset::open_text(decompressed, declared).with_context(|| format!("reading {}", spec.display_name()))?;
    let guarded = Guarded {
        inner: text,
        counters: Arc::clone(&counters),
    };
    Ok(OpenSource {
        reader: Box::new(BufReader::with_capacity(BUFFER_BYTES, guarded)),
        charset,
        size,
        counters,
        fingerprint,
        compressed,
        ranges,
        resumed_by: None,
    })
}

/// What `open_at` found.
pub enum Reopened {
    At(OpenSource),
    /// The source cannot continue from the checkpoint (it changed, or cannot be read again):
    /// why.
    Cannot(String),
}

/// Opens a source to continue reading at `offset` bytes of its content after its byte-order
/// mark, where a checkpoint says the next record starts: by a seek in a file, a Range request
/// to a server that takes them, or else by reading again from the start and skipping.
/// `expected` is the fingerprint kept with the checkpoint.
pub fn open_at(
    spec: &SourceSpec,
    offset: u64,
    expected: Option<(u64, i64)>,
    declared: Option<Charset>,
) -> Result<Reopened> {
    if *spec == SourceSpec::Stdin {
        return Ok(Reopened::Cannot(
            "standard input cannot be read again from the middle".into(),
        ));
    }
    // The first bytes tell whether there is a byte-order mark to step over, and whether the
    // content is compressed (then only reading again and skipping gets there).
    let (head, fingerprint) = match spec {
        SourceSpec::File(path) => {
            let mut file = open_file(path)?;
            let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
            let mut head = [0u8; 4];
            let n = read_up_to(&mut file, &mut head).with_context(|| format!("reading {}", path.display()))?;
            (head[..n].to_vec(), fingerprint_of(&meta))
        }
        SourceSpec::Url(url, guard) => {
            let probe = http::open(url, Some(4), guard.as_ref())?;
            let fingerprint = probe.fingerprint;
            (probe.head()?, fingerprint)
        }
        SourceSpec::Stdin => unreachable!("handled above"),
    };
    if fingerprint.is_none() || fingerprint != expected {
        return Ok(Reopened::Cannot(match spec {
            SourceSpec::Url(..) => "the server's copy changed since the checkpoint, or it gives no length or \
                                  validator to tell"
                .into(),
            _ => "the file changed since the checkpoint".into(),
        }));
    }
    let compressed = head.starts_with(GZIP_MAGIC) || head.starts_with(ZSTD_MAGIC);
    let (charset, bom) = match Charset::sniff(&head) {
        Some((charset, bom)) => (charset, bom as u64),
        None => (declared.unwrap_or_default(), 0),
    };
    // A checkpoint counts bytes of the decoded text: in another encoding, or compressed, only
    // reading again from the start gets back to it.
    let positioned: Option<(Raw, ResumeMethod)> = match spec {
        _ if compressed || !charset.is_utf8() => None,
        SourceSpec::File(path) => {
            let mut file = open_file(path)?;
            let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
            file.seek(SeekFrom::Start(bom + offset))
                .with_context(|| format!("seeking to byte {offset} of {}", path.display()))?;
            Some((
                Raw {
                    read: Box::new(file),
                    size: meta.is_file().then_some(meta.len()),
                    fingerprint,
                    ranges: None,
                    at: bom + offset,
                },
                ResumeMethod::Seek,
            ))
        }
        SourceSpec::Url(url, guard) => http::open_range(url, bom + offset, fingerprint, guard.as_ref())?
            .map(|d| (d.into_raw(), ResumeMethod::Range)),
        SourceSpec::Stdin => unreachable!("handled above"),
    };
    if let Some((raw, method)) = positioned {
        let counters = Arc::new(ReadCounters::default());
        counters.bytes_read.store(offset, Ordering::Relaxed);
        counters.record_start.store(offset, Ordering::Relaxed);
        counters.input_bytes.store(raw.at, Ordering::Relaxed);
        let size = raw.size;
        let ranges = raw.ranges;
        let guarded = Guarded {
            inner: Box::new(Counted {
                inner: raw.read,
                counters: Arc::clone(&counters),
                size,
            }),
            counters: Arc::clone(&counters),
        };
        return Ok(Reopened::At(OpenSource {
            reader: Box::new(BufReader::with_capacity(BUFFER_BYTES, guarded)),
            charset,
            size,
            counters,
            fingerprint,
            compressed: false,
            ranges,
            resumed_by: Some(method),
        }));
    }
    // From the start, skipping what the checkpoint covers.
    let mut source = open(spec, declared)?;
    source.counters.record_start.store(offset, Ordering::Relaxed);
    let mut skipped = 0;
    while skipped < offset {
        // Reading a large download or compressed file again can take a while: a signal stops
        // it before anything is read into the task.
        if let Some(signal) = crate::interrupt::received() {
            return Err(Stopped(signal).into());
        }
        let buf = source
            .reader
            .fill_buf()
            .with_context(|| format!("reading {} again up to the checkpoint", spec.display_name()))?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min((offset - skipped) as usize);
        source.reader.consume(n);
        skipped += n as u64;
    }
    if skipped < offset {
        return Ok(Reopened::Cannot(format!(
            "{} is shorter than the checkpoint's byte {offset}",
            spec.display_name()
        )));
    }
    source.resumed_by = Some(ResumeMethod::Reread);
    Ok(Reopened::At(source))
}

/// A signal came while a source was being read again up to its checkpoint: nothing was read
/// into the task, which stays as it was.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {} while reading the input again up to the checkpoint", crate::interrupt::name(*.0))]
pub struct Stopped(pub i32);

/// Decompresses what needs it (told by its first bytes), counting the input's own bytes.
fn decode(raw: Raw, spec: &SourceSpec) -> Result<(Box<dyn BufRead + Send>, bool, Arc<ReadCounters>)> {
    let counters = Arc::new(ReadCounters::default());
    counters.input_bytes.store(raw.at, Ordering::Relaxed);
    let counted = Counted {
        inner: raw.read,
        counters: Arc::clone(&counters),
        size: raw.size,
    };
    let mut buffered = BufReader::with_capacity(BUFFER_BYTES, counted);
    let head = buffered
        .fill_buf()
        .with_context(|| format!("reading {}", spec.display_name()))?;
    let inner: Box<dyn Read + Send> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(ZSTD_MAGIC) {
        let decoder = zstd::Decoder::with_buffer(buffered)
            .with_context(|| format!("starting to decompress {}", spec.display_name()))?;
        Box::new(decoder)
    } else {
        return Ok((Box::new(buffered), false, counters));
    };
    let named = Named {
        inner,
        name: spec.display_name(),
    };
    Ok((Box::new(BufReader::with_capacity(BUFFER_BYTES, named)), true, counters))
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

/// What identifies a file's content cheaply: its size and modification time.
fn fingerprint_of(meta: &std::fs::Metadata) -> Option<(u64, i64)> {
    if !meta.is_file() {
        return None;
    }
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((meta.len(), mtime.as_nanos() as i64))
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

/// Counts the input's own bytes, before decompression, and refuses to end before a known
/// length: an input whose size was known when it was opened (a file's size, a download's
/// length) that ends short was cut off, which is an error, never the end of the input.
struct Counted {
    inner: Box<dyn Read + Send>,
    counters: Arc<ReadCounters>,
    /// The input's whole length in bytes, when known; `input_bytes` counts from the start of
    /// the input, so that a source opened mid-way compares against it too.
    size: Option<u64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let at = self.counters.input_bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some(size) = self.size.filter(|&size| n == 0 && !buf.is_empty() && at < size) {
            return Err(io::Error::other(CutShort { at, size }));
        }
        Ok(n)
    }
}

/// An input that ended before its known length.
#[derive(Debug, thiserror::Error)]
#[error("the input ended at byte {at} of its {size} (it was cut short: truncated, or a download that broke off)")]
pub struct CutShort {
    pub at: u64,
    pub size: u64,
}

/// Says which input a decompression error comes from.
struct Named {
    inner: Box<dyn Read + Send>,
    name: String,
}

impl Read for Named {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() != io::ErrorKind::Other {
                io::Error::new(e.kind(), format!("{}: the compressed data is damaged: {e}", self.name))
            } else {
                e
            }
        })
    }
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

    /// A source whose size was known when it was opened and that ends short is cut off: an
    /// error, never the end of the input. Longer than its size (a file still growing) is not.
    #[test]
    fn an_input_that_ends_before_its_known_length_is_an_error() {
        let read = |bytes: &[u8], size: u64| {
            let raw = Raw {
                read: Box::new(io::Cursor::new(bytes.to_vec())),
                size: Some(size),
                fingerprint: None,
                ranges: None,
                at: 0,
            };
            let (mut decoded, _, _) = decode(raw, &SourceSpec::File("usage.csv".into())).unwrap();
            let mut out = Vec::new();
            decoded.read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read(b"a,b\n1,2\n", 8).unwrap(), b"a,b\n1,2\n");
        assert_eq!(read(b"a,b\n1,2\n", 4).unwrap(), b"a,b\n1,2\n");
        let err = read(b"a,b\n1,2\n", 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the input ended at byte 8 of its 100 (it was cut short: truncated, or a download that broke off)"
        );
        // Compressed: the compressed bytes are what the length counts.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, b"a,b\n1,2\n").unwrap();
        let gz = gz.finish().unwrap();
        let whole = gz.len() as u64;
        assert_eq!(read(&gz, whole).unwrap(), b"a,b\n1,2\n");
        assert!(read(&gz, whole + 10).unwrap_err().to_string().contains("cut short"));
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
