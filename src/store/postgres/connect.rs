//! Connecting to PostgreSQL: TLS (rustls) for every host that is not this machine, plain TCP
//! or a unix socket for local ones, and errors with the password taken out.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use postgres::config::{Host, SslMode};
use postgres::{Client, Config, NoTls};

use crate::store::location::PgUrl;

/// How long a connection attempt waits for the server before giving up.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether every host the URL names is this machine (localhost, 127.0.0.1, ::1 or a unix
/// socket): there the password and the data never cross a network, and TLS is not needed.
pub fn is_local(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]"),
    }) && config.get_hostaddrs().iter().all(|addr| addr.is_loopback())
}

/// Whether the URL sets `sslmode` itself: then it is followed as written.
fn sslmode_given(url: &PgUrl) -> bool {
    url::Url::parse(url.connection_string())
        .map(|u| u.query_pairs().any(|(k, _)| k == "sslmode"))
        .unwrap_or(false)
}

/// Connects to the database. Local hosts: no TLS unless the URL asks for it (`sslmode=require`).
/// Other hosts: TLS required, the server's certificate checked against the system's roots and
/// its host name, unless the URL says `sslmode=disable` (a private network, knowingly).
/// Errors name the URL without its password, and never contain it.
pub fn connect(url: &PgUrl) -> Result<Client> {
    let scrubbed = |e: &postgres::Error| anyhow!("{}", url.scrub(&chain(e)));
    let mut config: Config = url
        .connection_string()
        .parse()
        .map_err(|e: postgres::Error| scrubbed(&e))
        .with_context(|| format!("reading the PostgreSQL URL {url}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("flexprice-import");
    }
    let given = sslmode_given(url);
    let tls = match (given, config.get_ssl_mode()) {
        (true, SslMode::Disable) => false,
        (true, _) => true,
        (false, _) => !is_local(&config),
    };
    let connected = if tls {
        if !given {
            config.ssl_mode(SslMode::Require);
        }
        config.connect(rustls_connector()?)
    } else {
        config.ssl_mode(SslMode::Disable);
        config.connect(NoTls)
    };
    connected
        .map_err(|e| scrubbed(&e))
        .with_context(|| format!("connecting to the PostgreSQL store {url}"))
}

/// An error and its causes, `: `-separated, as anyhow's `{:#}` prints them (the driver's
/// Display alone says only "db error", its cause says what went wrong).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// rustls with the system's root certificates (rustls-native-certs reads the same bundle
/// `psql` does with `sslrootcert=system`), and aws-lc-rs, the provider reqwest already
/// brings, named explicitly so that no process-wide default is needed.
fn rustls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(anyhow!(
            "no root certificates found on this system to check the PostgreSQL server's certificate \
             (install ca-certificates, or set SSL_CERT_FILE)"
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        url.parse().unwrap()
    }

    #[test]
    fn only_this_machine_is_local() {
        for url in [
            "postgres://u:p@localhost/db",
            "postgres://u:p@127.0.0.1:5433/db",
            "postgres://u:p@[::1]:5432/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            assert!(is_local(&config(url)), "{url}");
        }
        for url in [
            "postgres://u:p@db.example.com/db",
            "postgres://u:p@10.0.0.7/db",
            "postgres://u:p@localhost,db.example.com/db",
        ] {
            assert!(!is_local(&config(url)), "{url}");
        }
    }

    #[test]
    fn an_unreachable_server_is_named_without_the_password() {
        // Port 1 on this machine: nothing listens there, so the refusal is immediate.
        let url = PgUrl::parse("postgres://ana:hunter22-secret@127.0.0.1:1/billing").unwrap();
        let err = format!("{:#}", connect(&url).err().expect("nothing listens on port 1"));
        assert!(!err.contains("hunter22"), "{err}");
        assert!(err.contains("postgres://ana:***@127.0.0.1:1/billing"), "{err}");
    }
}
