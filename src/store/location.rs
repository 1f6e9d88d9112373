//! Where the store is: a SQLite file (the embedded default) or a PostgreSQL database named by
//! a `postgres://` URL. The URL carries the password, so this type never shows it: Display and
//! Debug print `postgres://user:***@host:5432/db`, and `PgUrl::scrub` takes it out of any text
//! (a driver's error may echo what it was given).

use std::fmt;
use std::path::PathBuf;

use crate::exit::usage;

/// The store a command works on (`--db`, `FLEXPRICE_IMPORT_DB`).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file, created on first write.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by many hosts.
    Postgres(PgUrl),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` names a PostgreSQL database; anything else is a
    /// SQLite path. Errors (usage): a PostgreSQL URL that does not parse, said without the URL
    /// (it may hold a password).
    pub fn parse(text: &std::ffi::OsStr) -> anyhow::Result<StoreLocation> {
        match text.to_str() {
            Some(t) if PgUrl::is_url(t) => Ok(StoreLocation::Postgres(PgUrl::parse(t)?)),
            _ => Ok(StoreLocation::Sqlite(PathBuf::from(text))),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreLocation::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

/// A `postgres://user:password@host:port/dbname?params` URL. Only `connection_string` gives
/// the text with its password, for the driver; everything printable is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    full: String,
    redacted: String,
    /// The password as written in the URL and percent-decoded: the texts `scrub` removes.
    secrets: Vec<String>,
}

/// The URL for the driver. tokio-postgres reads the credentials up to the FIRST `@`, where the
/// URL standard (and `url`, which the redacted text and the host checks come from) takes the
/// LAST: with a bare `@` in the password the driver would connect to a host made of the
/// password's tail. Then the driver gets `url`'s serialisation, in which that `@` is `%40`
/// (decoded back by the driver); otherwise the text exactly as given.
fn driver_text(text: &str, parsed: &url::Url) -> String {
    let authority = text
        .split_once("://")
        .map_or("", |(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
    if authority.matches('@').count() > 1 {
        parsed.to_string()
    } else {
        text.to_owned()
    }
}

/// What stands for a password wherever one would be shown.
const MASK: &str = "***";

impl PgUrl {
    /// Whether `text` is a PostgreSQL URL rather than a file path.
    pub fn is_url(text: &str) -> bool {
        let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Parses a URL. Errors (usage) never contain the URL: only what is wrong with it.
    pub fn parse(text: &str) -> anyhow::Result<PgUrl> {
        let parsed = url::Url::parse(text).map_err(|e| {
            usage(format!(
                "--db: the PostgreSQL URL does not parse ({e}); the form is postgres://user:password@host:5432/dbname"
            ))
        })?;
        if parsed.host_str().is_none_or(str::is_empty) && !parsed.query_pairs().any(|(k, _)| k == "host") {
            return Err(usage(
                "--db: the PostgreSQL URL names no host; the form is postgres://user:password@host:5432/dbname",
            ));
        }
        let mut secrets = Vec::new();
        let mut shown = parsed.clone();
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
            if let Ok(decoded) = percent_decode(password) {
                secrets.push(decoded);
            }
            // set_password fails only for URLs that cannot have one (no host), refused above.
            let _ = shown.set_password(Some(MASK));
        }
        // `?password=…` is the other way libpq takes one.
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let mut query = shown.query_pairs_mut();
            query.clear();
            for (k, v) in &pairs {
                if k == "password" {
                    secrets.push(v.clone());
                    query.append_pair(k, MASK);
                } else {
                    query.append_pair(k, v);
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so that a decoded password containing the encoded one goes whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(PgUrl {
            full: driver_text(text, &parsed),
            redacted: shown.to_string(),
            secrets,
        })
    }

    /// The URL with its password, for the driver only: never print it.
    pub fn connection_string(&self) -> &str {
        &self.full
    }

    /// The URL with `***` for the password.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `text` with the whole URL replaced by its redacted form and the password (as written
    /// and percent-decoded) by `***`: for messages that come from the driver.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.full, &self.redacted);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), MASK);
        }
        out
    }
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({:?})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_sqlite_and_a_url_is_postgres() {
        let sqlite = StoreLocation::parse("postgres.db".as_ref()).unwrap();
        assert_eq!(sqlite, StoreLocation::Sqlite("postgres.db".into()));
        for text in ["postgres://u:p@db.example.com:5432/app", "POSTGRESQL://u@db/app"] {
            assert!(StoreLocation::parse(text.as_ref()).unwrap().is_postgres(), "{text}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = PgUrl::parse("postgres://ana:s%40cret-pw@db.example.com:5432/billing?sslmode=require").unwrap();
        let location = StoreLocation::Postgres(url.clone());
        assert_eq!(
            location.to_string(),
            "postgres://ana:***@db.example.com:5432/billing?sslmode=require"
        );
        let debug = format!("{location:?} {url:?} {:?}", Some(&url));
        assert!(!debug.contains("cret"), "{debug}");
        assert!(debug.contains("ana:***@db.example.com"), "{debug}");
        let message = "error connecting to postgres://ana:s%40cret-pw@db.example.com:5432/billing?sslmode=require \
                       with password s@cret-pw";
        let scrubbed = url.scrub(message);
        assert!(!scrubbed.contains("cret"), "{scrubbed}");
        assert!(
            scrubbed.contains("postgres://ana:***@db.example.com:5432/billing"),
            "{scrubbed}"
        );
    }

    #[test]
    fn a_password_in_the_query_is_hidden_too() {
        let url = PgUrl::parse("postgresql://db.example.com/billing?user=ana&password=hunter22").unwrap();
        assert_eq!(
            url.to_string(),
            "postgresql://db.example.com/billing?user=ana&password=***"
        );
        assert_eq!(url.scrub("bad password hunter22"), "bad password ***");
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = StoreLocation::parse("postgres://ana:hunter22@[::1/db".as_ref()).unwrap_err();
        let text = format!("{err:#}");
        assert!(!text.contains("hunter22"), "{text}");
        assert!(text.contains("does not parse"), "{text}");
        let none = StoreLocation::parse("postgres:///db".as_ref()).unwrap_err();
        assert!(format!("{none:#}").contains("names no host"), "{none:#}");
    }
}
