//! The `chat-server` binary: reads the configuration (flags, environment, file), then runs a
//! maintenance subcommand, prints or checks the configuration, or sets up logging and runs the
//! server until SIGINT/SIGTERM (reloading on SIGHUP).

use std::ffi::OsString;
use std::process::ExitCode;

use chat_server::config::{self, LoadError};
use chat_server::{Config, LogFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// Exit code of a configuration that is wrong (as for a wrong flag).
const BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Everything the server writes (database, WAL, backups, exports, keys, sockets) is its
    // user's alone, whatever umask it was started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let args: Vec<OsString> = std::env::args_os().collect();
    let config = match config::load(args.clone()) {
        Ok(config) => config,
        Err(LoadError::Args(err)) => err.exit(),
        Err(err @ LoadError::File(_)) => {
            eprintln!("chat-server: {err}");
            return ExitCode::from(BAD_CONFIG);
        }
    };
    if config.print_config {
        print!("{}", config::render(&config));
        return ExitCode::SUCCESS;
    }
    if config.check_config {
        let problems = config::check(&config);
        let source = config
            .config
            .as_ref()
            .map_or("flags and environment".to_string(), |p| {
                p.display().to_string()
            });
        if problems.is_empty() {
            println!("chat-server: the configuration is fine ({source})");
            return ExitCode::SUCCESS;
        }
        for problem in &problems {
            eprintln!("chat-server: {problem}");
        }
        eprintln!(
            "chat-server: {} problem(s) in the configuration ({source})",
            problems.len()
        );
        return ExitCode::from(BAD_CONFIG);
    }
    if let Some(command) = &config.command {
        return match chat_server::admin::run(&config, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("chat-server: {err:#}");
                ExitCode::from(1)
            }
        };
    }
    let set_log = match init_logging(&config) {
        Ok(set_log) => set_log,
        Err(err) => {
            eprintln!("chat-server: log = {:?}: {err}", config.log);
            return ExitCode::from(BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("chat-server: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let reload: chat_server::Reload =
        Box::new(move || config::load(args.clone()).map_err(|err| anyhow::anyhow!("{err}")));
    match runtime.block_on(run(config, reload, set_log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-server: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr in the asked format, filtered by RUST_LOG when set, else by `--log`.
/// Returns how to change the filter later (a reload); RUST_LOG, when set, keeps it.
fn init_logging(config: &Config) -> Result<chat_server::SetLog, String> {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = match from_env {
        Some(filter) => filter,
        None => chat_server::log_filter(&config.log)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let format = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .init();
    Ok(Box::new(move |directives: &str| {
        if fixed {
            return Err("RUST_LOG is set, and wins over log".into());
        }
        let filter = chat_server::log_filter(directives)?;
        handle.reload(filter).map_err(|err| err.to_string())
    }))
}

async fn run(
    config: Config,
    reload: chat_server::Reload,
    set_log: chat_server::SetLog,
) -> anyhow::Result<()> {
    let listener = chat_server::bind(&config).await?;
    #[cfg(unix)]
    tokio::spawn(async {
        // SIGUSR1 prints the delivery counters, for benchmarks.
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let (deliveries, writes) = chat_server::stats();
            // One write, so that a reader never sees half a line.
            let line = format!("stats deliveries={deliveries} writes={writes}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
        }
    });
    let options = chat_server::Options {
        reload: Some(reload),
        set_log: Some(set_log),
        ..chat_server::Options::default()
    };
    chat_server::serve_with(config, listener, shutdown_signal(), options).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
