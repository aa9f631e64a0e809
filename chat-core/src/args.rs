//! Command-line flags every front-end shares: how to secure the connection and which account to
//! log in to. Front-ends flatten [`SecurityArgs`] into their own clap parser.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::protocol::Secret;
use crate::tls::{TlsMode, TlsOptions};

/// TLS and account flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// Always use TLS (the default for hosts other than loopback).
    #[arg(long, env = "CHAT_TLS", conflicts_with = "no_tls")]
    pub tls: bool,
    /// Never use TLS, even to a host other than loopback.
    #[arg(long, env = "CHAT_NO_TLS")]
    pub no_tls: bool,
    /// Trust only the CA certificates in this PEM file, instead of the system's.
    #[arg(long, env = "CHAT_CA")]
    pub ca: Option<PathBuf>,
    /// Trust a self-signed server certificate with this SHA-256 fingerprint (and remember it),
    /// without asking.
    #[arg(long, env = "CHAT_TRUST_FINGERPRINT")]
    pub trust_fingerprint: Option<String>,
    /// Log in to this account. The password comes from CHAT_PASSWORD, or is asked for without
    /// echo; it is never a flag, so it stays out of the shell history and the process list.
    #[arg(long, env = "CHAT_ACCOUNT")]
    pub account: Option<String>,
}

impl SecurityArgs {
    /// The TLS options these flags describe.
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            mode: if self.tls {
                TlsMode::On
            } else if self.no_tls {
                TlsMode::Off
            } else {
                TlsMode::Auto
            },
            ca: self.ca.clone(),
            trust_fingerprint: self.trust_fingerprint.clone(),
        }
    }

    /// The account's password: `CHAT_PASSWORD`, or asked on the terminal without echo.
    /// `None` when no account is asked for.
    pub fn password(&self) -> std::io::Result<Option<Secret>> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        if let Some(password) = std::env::var_os("CHAT_PASSWORD") {
            return Ok(Some(Secret::new(password.to_string_lossy())));
        }
        if !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(
                "--account needs CHAT_PASSWORD when stdin is not a terminal",
            ));
        }
        let password = rpassword::prompt_password(format!("Password for {account}: "))?;
        Ok(Some(Secret::new(password)))
    }
}

/// Asks a yes/no question on the terminal; false when there is none to ask on.
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

/// The connector for `host:port` these flags ask for. Before any session starts it checks the
/// server's certificate: an unknown self-signed one is shown with its fingerprint and trusted
/// (and remembered) only if the user says yes on the terminal; a changed one is refused.
pub async fn connector(
    args: &SecurityArgs,
    host: &str,
    port: u16,
) -> std::io::Result<crate::client::TcpConnector> {
    use crate::tls::{Untrusted, check_certificate, explain};
    let options = args.tls_options();
    let connector = options.connector(host, port, None)?;
    match check_certificate(&connector).await {
        None => Ok(connector),
        Some(Untrusted::Unknown { fingerprint }) => {
            eprintln!(
                "{}",
                explain(
                    &connector.addr,
                    &Untrusted::Unknown {
                        fingerprint: fingerprint.clone()
                    }
                )
            );
            if confirm("Trust this certificate and remember it for this server?") {
                options.connector(host, port, Some(fingerprint))
            } else {
                Err(std::io::Error::other(format!(
                    "the certificate of {} is not trusted (or pass --trust-fingerprint)",
                    connector.addr
                )))
            }
        }
        Some(changed) => Err(std::io::Error::other(explain(&connector.addr, &changed))),
    }
}
