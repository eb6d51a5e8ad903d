//! What Strait's binaries (`strait`, `strait-sidecar`, `strait-gateway`)
//! share, so each `main.rs` only states how it differs.
//!
//! Owns: parsing the command line ([`CommandLine`]: Strait's own `run` and
//! `check`, and Envoy's flags as Istio's `pilot-agent` passes them), the
//! per-binary defaults ([`Profile`]), and the start-up steps every binary
//! takes ([`Profile::run`]: install logging, build [`strait_app::Options`],
//! start the [`strait_app::Proxy`], wait for a signal, shut down with the
//! drain time) or `check` mode ([`check`]). It is also the one place that
//! reads the environment (`STRAIT_RUNTIME`), so libraries take everything
//! as options.
//!
//! Only binaries depend on this crate: it installs a global logger and
//! prints to stdout, which no library may do.

mod command_line;
mod start;

use std::{path::PathBuf, time::Duration};

pub use command_line::{CommandLine, FLAGS, Mode};
pub use start::{check, install_logging, options};

/// Why a binary could not do what its command line asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A command line the binary does not understand.
    #[error("{0} (try --help)")]
    Usage(String),
    /// `run` without `-c` in a binary that has no embedded config.
    #[error("-c FILE is required (an Envoy v3 bootstrap): there is no default config (try --help)")]
    NeedsConfig,
    /// `-l` named neither a level nor a valid `tracing` filter.
    #[error("-l")]
    LogFilter(#[source] tracing_subscriber::filter::ParseError),
    /// A global logger was already installed.
    #[error("installing the logger: {0}")]
    Logging(String),
    /// The config file of `check` could not be read.
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The proxy did not start (bad config, a port in use, ...).
    #[error(transparent)]
    App(#[from] strait_app::AppError),
}

/// What differs between the binaries; every flag means the same in each.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The usage lines `--help` prints before [`FLAGS`].
    pub synopsis: &'static str,
    /// The config `run` uses without `-c`; `None` makes `-c` required.
    pub embedded_config: Option<&'static str>,
    /// The log level without `-l`, as a `tracing` directive (`info`, `warn`).
    pub log_level: &'static str,
    /// How long listeners drain on SIGTERM/SIGINT without `--drain-time-s`.
    pub drain_time: Duration,
}

impl Profile {
    /// Parses the arguments after the program name with this binary's
    /// defaults. `run` without `-c` is refused here, before anything starts,
    /// when there is no embedded config.
    pub fn parse<I: IntoIterator<Item = String>>(&self, args: I) -> Result<CommandLine, CliError> {
        let cl = CommandLine::parse_with(self.log_level, args)?;
        if cl.mode == Mode::Run && cl.config.is_none() && self.embedded_config.is_none() {
            return Err(CliError::NeedsConfig);
        }
        Ok(cl)
    }

    /// The text for `--help`.
    pub fn usage(&self) -> String {
        format!("usage:\n{}\n\n{FLAGS}", self.synopsis)
    }

    /// The drain time `cl` asks for, else this binary's default.
    pub fn drain_time(&self, cl: &CommandLine) -> Duration {
        cl.drain_time.unwrap_or(self.drain_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CONFIG: Profile = Profile {
        synopsis: "  test -c FILE",
        embedded_config: None,
        log_level: "warn",
        drain_time: Duration::from_secs(45),
    };

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults_apply_only_where_the_command_line_is_silent() {
        let cl = NO_CONFIG.parse(args(&["-c", "/a.json"])).expect("parses");
        assert_eq!(cl.log_level, "warn");
        assert_eq!(NO_CONFIG.drain_time(&cl), Duration::from_secs(45));
        let cl = NO_CONFIG
            .parse(args(&[
                "-c",
                "/a.json",
                "-l",
                "debug",
                "--drain-time-s",
                "3",
            ]))
            .expect("parses");
        assert_eq!(cl.log_level, "debug");
        assert_eq!(NO_CONFIG.drain_time(&cl), Duration::from_secs(3));
    }

    #[test]
    fn run_without_config_needs_an_embedded_one() {
        let err = NO_CONFIG
            .parse(args(&["--concurrency", "1"]))
            .expect_err("refused");
        assert!(matches!(err, CliError::NeedsConfig), "{err}");
        assert!(err.to_string().starts_with("-c FILE is required"), "{err}");
        // Help needs no config; check's own message stays the parser's.
        let help = NO_CONFIG.parse(args(&["--help"])).expect("help");
        assert_eq!(help.mode, Mode::Help);
        let check = NO_CONFIG.parse(args(&["check"])).expect_err("refused");
        assert!(check.to_string().contains("check needs -c FILE"), "{check}");
        let embedded = Profile {
            embedded_config: Some("static_resources: {}"),
            ..NO_CONFIG
        };
        let cl = embedded.parse(args(&[])).expect("runs the embedded config");
        assert_eq!((cl.mode, cl.config), (Mode::Run, None));
    }

    #[test]
    fn usage_is_the_synopsis_then_the_shared_flags() {
        let usage = NO_CONFIG.usage();
        assert!(usage.starts_with("usage:\n  test -c FILE\n\nflags that take effect:"));
        assert!(usage.ends_with(FLAGS));
    }
}
