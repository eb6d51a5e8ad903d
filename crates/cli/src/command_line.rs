//! The command line: Strait's own (`run`, `check`) and the one Istio's
//! `pilot-agent` gives Envoy (`pkg/envoy/proxy.go`), so Strait can be started
//! in Envoy's place. Each Envoy flag either takes effect or is accepted
//! without effect for a reason given beside it; an unknown flag is an error.
//! Every binary parses the same flags; only their defaults differ
//! ([`crate::Profile`]).

use std::{path::PathBuf, time::Duration};

use strait_app::BootstrapOverrides;

use crate::CliError;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    /// Validate the config, print every problem, exit 1 on any.
    Check,
    Help,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub mode: Mode,
    /// `-c`/`--config-path`; `None` runs the binary's embedded config, if
    /// it has one ([`crate::Profile::embedded_config`]).
    pub config: Option<PathBuf>,
    /// `--config-yaml`, `--service-*`, `--allow-unknown-static-fields`.
    pub overrides: BootstrapOverrides,
    /// `--concurrency`: worker threads.
    pub concurrency: Option<usize>,
    /// `-l`/`--log-level`, as a `tracing` filter directive.
    pub log_level: String,
    /// `--drain-time-s`: how long listeners drain on shutdown before exit;
    /// `None` takes the binary's default ([`crate::Profile::drain_time`]).
    pub drain_time: Option<Duration>,
    /// `--file-flush-interval-msec`: how often access-log files are
    /// flushed; `None` for Envoy's 1 s.
    pub file_flush_interval: Option<Duration>,
}

/// The flags every binary takes, for `--help` after the binary's own usage
/// lines ([`crate::Profile::usage`]).
pub const FLAGS: &str = "\
flags that take effect:
  -c, --config-path FILE          Envoy v3 bootstrap (YAML or JSON)
  --config-yaml YAML              merged over the file (protobuf merge)
  --concurrency N                 worker threads
  -l, --log-level LEVEL           trace, debug, info, warning, error, critical, off
  --drain-time-s N                listener drain time on shutdown
  --file-flush-interval-msec N    access-log file flush interval
  --service-node ID               node.id
  --service-cluster NAME          node.cluster
  --service-zone ZONE             node.locality.zone
  --allow-unknown-static-fields   ignore (and log) unknown bootstrap fields

accepted for Envoy compatibility, without effect (see docs/CONFIG.md):
  --drain-strategy immediate|gradual, --parent-shutdown-time-s N,
  --local-address-ip-version v4|v6,
  --disable-hot-restart, --component-log-level SPEC, --log-format FORMAT,
  --skip-deprecated-logs";

impl CommandLine {
    /// Parses the arguments after the program name. Flags take their value
    /// as the next argument or after `=` (`--concurrency=2`), as Envoy's do.
    /// Without `-l` the level is `info`, Envoy's default.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<CommandLine, CliError> {
        Self::parse_with("info", args)
    }

    /// [`CommandLine::parse`] with `default_log_level` (a `tracing`
    /// directive) when `-l` is not given.
    pub fn parse_with<I: IntoIterator<Item = String>>(
        default_log_level: &str,
        args: I,
    ) -> Result<CommandLine, CliError> {
        let mut cl = CommandLine {
            mode: Mode::Run,
            config: None,
            overrides: BootstrapOverrides::default(),
            concurrency: None,
            log_level: default_log_level.into(),
            drain_time: None,
            file_flush_interval: None,
        };
        let mut it = args.into_iter().peekable();
        match it.peek().map(String::as_str) {
            Some("run") => {
                it.next();
            }
            Some("check") => {
                cl.mode = Mode::Check;
                it.next();
            }
            _ => {}
        }
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "-c" | "--config-path" | "--config" => cl.config = Some(value()?.into()),
                "--config-yaml" => cl.overrides.config_yaml = Some(value()?),
                "--concurrency" => match number(&flag, &value()?)? {
                    // pilot-agent passes the flag only when positive; no
                    // worker at all would serve nothing.
                    0 => return Err(CliError::Usage("--concurrency must be at least 1".into())),
                    n => cl.concurrency = Some(n),
                },
                "-l" | "--log-level" => cl.log_level = log_level(&value()?)?,
                "--drain-time-s" => {
                    cl.drain_time = Some(Duration::from_secs(number(&flag, &value()?)?));
                }
                "--service-node" => cl.overrides.service_node = Some(value()?),
                "--service-cluster" => cl.overrides.service_cluster = Some(value()?),
                "--service-zone" => cl.overrides.service_zone = Some(value()?),
                "--allow-unknown-static-fields" => cl.overrides.allow_unknown_static_fields = true,
                // Strait always drains every connection at once, which is
                // what pilot-agent asks for (`immediate`); `gradual` only
                // spreads the same notices over the drain time.
                "--drain-strategy" => match value()?.as_str() {
                    "immediate" | "gradual" => {}
                    other => {
                        return Err(CliError::Usage(format!(
                            "--drain-strategy: '{other}' is not immediate or gradual"
                        )));
                    }
                },
                // Both only matter to Envoy's hot restart (the parent process
                // handing sockets to the child), which Strait does not do.
                "--parent-shutdown-time-s" => {
                    number::<u64>(&flag, &value()?)?;
                }
                "--disable-hot-restart" => {}
                // Envoy uses it to pick its own "local address" for stats
                // and headers it fills from it; Strait fills none.
                "--local-address-ip-version" => match value()?.as_str() {
                    "v4" | "v6" => {}
                    other => {
                        return Err(CliError::Usage(format!(
                            "--local-address-ip-version: '{other}' is not v4 or v6"
                        )));
                    }
                },
                "--file-flush-interval-msec" => {
                    cl.file_flush_interval = Some(Duration::from_millis(number(&flag, &value()?)?));
                }
                // Envoy's logger names and spdlog patterns have no meaning
                // for Strait's `tracing` logs; `-l` sets the level.
                "--component-log-level" | "--log-format" => {
                    value()?;
                }
                // Strait logs nothing about deprecated fields.
                "--skip-deprecated-logs" => {}
                "-h" | "--help" => cl.mode = Mode::Help,
                other => return Err(CliError::Usage(format!("unknown argument {other:?}"))),
            }
        }
        if cl.mode == Mode::Check && cl.config.is_none() {
            return Err(CliError::Usage("check needs -c FILE".into()));
        }
        Ok(cl)
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, CliError> {
    v.parse()
        .map_err(|_| CliError::Usage(format!("{flag}: '{v}' is not a number")))
}

/// Envoy's level names as `tracing` filter directives.
fn log_level(v: &str) -> Result<String, CliError> {
    Ok(match v {
        "trace" | "debug" | "info" | "error" | "off" => v.to_owned(),
        "warning" | "warn" => "warn".to_owned(),
        // `tracing` has nothing above error.
        "critical" => "error".to_owned(),
        // Anything else is taken as a `tracing` filter (`strait_app=debug`),
        // checked when the logger is installed.
        other if other.contains('=') => other.to_owned(),
        other => return Err(CliError::Usage(format!("-l: unknown log level '{other}'"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CommandLine, CliError> {
        CommandLine::parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn pilot_agent_command_line() {
        // The arguments pkg/envoy/proxy.go builds, in its order.
        let cl = parse(&[
            "-c",
            "/etc/istio/proxy/envoy-rev.json",
            "--drain-time-s",
            "45",
            "--drain-strategy",
            "immediate",
            "--local-address-ip-version",
            "v4",
            "--file-flush-interval-msec",
            "1000",
            "--disable-hot-restart",
            "--allow-unknown-static-fields",
            "--component-log-level",
            "misc:error",
            "--config-yaml",
            "node: {id: x}",
            "--skip-deprecated-logs",
            "--concurrency",
            "2",
            "-l",
            "warning",
            "--log-format",
            "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
            "--parent-shutdown-time-s",
            "60",
            "--service-cluster",
            "istio-proxy",
            "--service-node",
            "sidecar~1.2.3.4~foo~bar",
            "--service-zone",
            "z1",
        ])
        .expect("parses");
        assert_eq!(cl.mode, Mode::Run);
        assert_eq!(cl.config, Some("/etc/istio/proxy/envoy-rev.json".into()));
        assert_eq!(cl.drain_time, Some(Duration::from_secs(45)));
        assert_eq!(cl.file_flush_interval, Some(Duration::from_millis(1000)));
        assert_eq!(cl.concurrency, Some(2));
        assert_eq!(cl.log_level, "warn");
        assert_eq!(
            cl.overrides,
            BootstrapOverrides {
                config_yaml: Some("node: {id: x}".into()),
                service_node: Some("sidecar~1.2.3.4~foo~bar".into()),
                service_cluster: Some("istio-proxy".into()),
                service_zone: Some("z1".into()),
                allow_unknown_static_fields: true,
            }
        );
    }

    #[test]
    fn subcommands_and_inline_values() {
        let cl = parse(&["run", "--config-path=/a.yaml", "--concurrency=3"]).expect("run");
        assert_eq!((cl.mode, cl.concurrency), (Mode::Run, Some(3)));
        assert_eq!(cl.config, Some("/a.yaml".into()));
        let cl = parse(&["check", "-c", "/b.json"]).expect("check");
        assert_eq!(cl.mode, Mode::Check);
        assert_eq!(parse(&["--help"]).expect("help").mode, Mode::Help);
        assert_eq!(parse(&[]).expect("default").config, None);
    }

    #[test]
    fn bad_command_lines_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unknown argument \"--bogus\""),
            (&["-c"], "-c needs a value"),
            (
                &["--concurrency", "two"],
                "--concurrency: 'two' is not a number",
            ),
            (&["--concurrency", "0"], "--concurrency must be at least 1"),
            (&["--drain-strategy", "slow"], "--drain-strategy: 'slow'"),
            (&["--local-address-ip-version", "v5"], "not v4 or v6"),
            (&["-l", "loud"], "unknown log level 'loud'"),
            (&["check"], "check needs -c FILE"),
        ];
        for (args, want) in cases {
            let err = parse(args).expect_err("refused").to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
