//! The steps every binary takes once its command line is parsed: `run`
//! (logging, options, the proxy until a signal, the drain) or `check`.

use std::process::ExitCode;

use strait_app::{ConfigSource, Options, Proxy, RuntimeModel};

use crate::{CliError, CommandLine, Profile};

impl Profile {
    /// Runs the config `cl` names (else the embedded one) until SIGINT,
    /// SIGTERM or `POST /quitquitquit`, re-reading it on SIGHUP; then lets
    /// listeners drain for [`Profile::drain_time`]. Blocks the calling
    /// thread throughout. Fails, having bound nothing, if the first config
    /// is refused.
    pub fn run(&self, cl: &CommandLine) -> Result<(), CliError> {
        let source = match (&cl.config, self.embedded_config) {
            (Some(path), _) => ConfigSource::File(path.clone()),
            (None, Some(text)) => ConfigSource::Inline(text.into()),
            (None, None) => return Err(CliError::NeedsConfig),
        };
        install_logging(&cl.log_level)?;
        let mut proxy = Proxy::start(options(source, cl))?;
        proxy.run_until_signal()?;
        tracing::info!("shutting down");
        proxy.shutdown(self.drain_time(cl));
        Ok(())
    }
}

/// Installs the process-wide logger: `tracing` to stderr, filtered by
/// `level` (`-l`). `--component-log-level` and `--log-format` name Envoy's
/// loggers and spdlog patterns, which mean nothing here (see the parser).
pub fn install_logging(level: &str) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(CliError::LogFilter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| CliError::Logging(e.to_string()))
}

/// The proxy's options from the command line. The thread model comes from
/// `STRAIT_RUNTIME` (`shared` selects one work-stealing runtime, kept so
/// docs/decisions/0001-workers.md's comparison can be re-run with
/// `cargo xtask bench`); the binary reads it so libraries read no
/// environment.
pub fn options(source: ConfigSource, cl: &CommandLine) -> Options {
    let mut opts = Options::new(source);
    opts.overrides = cl.overrides.clone();
    if let Some(n) = cl.concurrency {
        opts.concurrency = n;
    }
    if let Some(d) = cl.file_flush_interval {
        opts.file_flush_interval = d;
    }
    opts.runtime = runtime_model(std::env::var("STRAIT_RUNTIME").ok().as_deref());
    opts
}

fn runtime_model(var: Option<&str>) -> RuntimeModel {
    match var {
        Some("shared") => RuntimeModel::Shared,
        _ => RuntimeModel::PerCore,
    }
}

/// `check`: validates the file `-c` names with the command line's bootstrap
/// overrides, printing `FILE: OK` or every problem (one per line, each
/// naming its field) to stdout. Success only when there is no problem.
pub fn check(cl: &CommandLine) -> Result<ExitCode, CliError> {
    let Some(path) = &cl.config else {
        return Err(CliError::Usage("check needs -c FILE".into()));
    };
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(match strait_app::check_with(&text, &cl.overrides) {
        Ok(_) => {
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}: {e}", path.display());
            }
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn strait_runtime_shared_selects_the_shared_runtime() {
        assert_eq!(runtime_model(Some("shared")), RuntimeModel::Shared);
        assert_eq!(runtime_model(Some("per-core")), RuntimeModel::PerCore);
        assert_eq!(runtime_model(None), RuntimeModel::PerCore);
    }

    #[test]
    fn options_carry_the_command_line() {
        let cl = CommandLine::parse(
            ["-c", "/a.yaml", "--concurrency", "3", "--service-node", "n"].map(String::from),
        )
        .expect("parses");
        let opts = options(ConfigSource::File(PathBuf::from("/a.yaml")), &cl);
        assert_eq!(opts.concurrency, 3);
        assert_eq!(opts.overrides.service_node.as_deref(), Some("n"));
    }

    #[test]
    fn check_names_an_unreadable_file() {
        let cl = CommandLine::parse(["check", "-c", "/nonexistent/strait.yaml"].map(String::from))
            .expect("parses");
        let err = check(&cl).expect_err("refused");
        assert!(
            matches!(&err, CliError::Read { path, .. } if path == &PathBuf::from("/nonexistent/strait.yaml")),
            "{err}"
        );
    }
}
