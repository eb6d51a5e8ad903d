//! Outlier detection: results reported from the request path (atomics only)
//! eject hosts on consecutive failures; a periodic pass on the control
//! runtime returns them and applies success-rate and failure-percentage
//! ejection, as Envoy's detector does.

use std::{
    sync::{OnceLock, atomic::Ordering},
    time::{Duration, Instant},
};

use strait_model::OutlierDetection;

use crate::{
    cluster::Cluster,
    host::{FAILED_OUTLIER, Host},
    lb::random,
};

/// What happened to one request sent to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// Connect failure, timeout or reset: an error of local origin.
    LocalFailure,
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Which consecutive-failure rule fired.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocal,
    SuccessRate,
    FailurePercentage,
}

impl Cluster {
    /// Records `outcome` for `host`; may eject it. Called on the request
    /// path: atomics only, no lock, no allocation.
    pub(crate) fn report(&self, host: &Host, outcome: Outcome) {
        let spec = self.spec.load();
        let Some(od) = spec.outlier_detection.as_ref() else {
            return;
        };
        let s = &host.outlier;
        // Without the split, a local-origin failure counts as a 503 from the
        // upstream (Envoy maps it so).
        let status = match outcome {
            Outcome::Status(code) => {
                if od.split_external_local_origin_errors {
                    s.consecutive_local.store(0, Ordering::Relaxed);
                }
                code
            }
            Outcome::LocalFailure if od.split_external_local_origin_errors => {
                let n = s.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= od.consecutive_local_origin_failure {
                    s.consecutive_local.store(0, Ordering::Relaxed);
                    self.try_eject(host, od, Rule::ConsecutiveLocal);
                }
                return;
            }
            Outcome::LocalFailure => 503,
        };
        s.interval_total.fetch_add(1, Ordering::Relaxed);
        if status < 500 {
            s.interval_success.fetch_add(1, Ordering::Relaxed);
            s.consecutive_5xx.store(0, Ordering::Relaxed);
            s.consecutive_gateway.store(0, Ordering::Relaxed);
            return;
        }
        if (502..=504).contains(&status) {
            let n = s.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= od.consecutive_gateway_failure {
                s.consecutive_gateway.store(0, Ordering::Relaxed);
                self.try_eject(host, od, Rule::ConsecutiveGateway);
            }
        } else {
            s.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        let n = s.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= od.consecutive_5xx {
            s.consecutive_5xx.store(0, Ordering::Relaxed);
            self.try_eject(host, od, Rule::Consecutive5xx);
        }
    }

    fn try_eject(&self, host: &Host, od: &OutlierDetection, rule: Rule) -> bool {
        let enforcing = match rule {
            Rule::Consecutive5xx => od.enforcing_consecutive_5xx,
            Rule::ConsecutiveGateway => od.enforcing_consecutive_gateway_failure,
            Rule::ConsecutiveLocal => od.enforcing_consecutive_local_origin_failure,
            Rule::SuccessRate => od.enforcing_success_rate,
            Rule::FailurePercentage => od.enforcing_failure_percentage,
        };
        self.stats.outlier_detected.increment(1);
        if host.failed_outlier_check() || random() % 100 >= u64::from(enforcing) {
            return false;
        }
        let state = self.lb.load();
        let total = state.hosts.len().max(1) as u64;
        let ejected = state
            .hosts
            .iter()
            .filter(|h| h.failed_outlier_check())
            .count() as u64;
        if ejected * 100 / total >= u64::from(od.max_ejection_percent) {
            self.stats.outlier_overflow.increment(1);
            return false;
        }
        if !host.set_flag(FAILED_OUTLIER, true) {
            return false;
        }
        host.outlier.ejections.fetch_add(1, Ordering::Relaxed);
        host.outlier
            .ejected_at_ms
            .store(now_ms(), Ordering::Relaxed);
        self.stats.outlier_ejected.increment(1);
        tracing::info!(cluster = %self.name(), host = %host.addr(), ?rule, "outlier ejected");
        self.hosts_changed();
        true
    }

    /// The periodic pass: returns hosts whose ejection has run out, then
    /// applies success-rate and failure-percentage ejection over the
    /// interval's results. Runs on the control runtime.
    pub(crate) fn outlier_sweep(&self) {
        let spec = self.spec.load_full();
        let Some(od) = spec.outlier_detection.as_ref() else {
            return;
        };
        let state = self.lb.load_full();
        let now = now_ms();
        let mut changed = false;
        for h in &state.hosts {
            let s = &h.outlier;
            if h.failed_outlier_check() {
                let n = s.ejections.load(Ordering::Relaxed).max(1);
                let base = od.base_ejection_time.as_millis() as u64;
                let max = od.max_ejection_time.as_millis() as u64;
                let lasts = base.saturating_mul(u64::from(n)).min(max.max(base));
                if now.saturating_sub(s.ejected_at_ms.load(Ordering::Relaxed)) >= lasts {
                    changed |= h.set_flag(FAILED_OUTLIER, false);
                    tracing::info!(cluster = %self.name(), host = %h.addr(), "outlier ejection ended");
                }
            } else {
                // A quiet interval brings the next ejection's length back down.
                let n = s.ejections.load(Ordering::Relaxed);
                if n > 0
                    && now.saturating_sub(s.ejected_at_ms.load(Ordering::Relaxed))
                        >= od.base_ejection_time.as_millis() as u64 * u64::from(n)
                            + od.interval.as_millis() as u64
                {
                    s.ejections.store(n - 1, Ordering::Relaxed);
                }
            }
        }
        let results: Vec<(usize, u64, u64)> = state
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let total = h.outlier.interval_total.swap(0, Ordering::Relaxed);
                let ok = h.outlier.interval_success.swap(0, Ordering::Relaxed);
                (i, total, ok)
            })
            .collect();
        let rate = |total: u64, ok: u64| ok as f64 * 100.0 / total.max(1) as f64;
        let sr: Vec<(usize, f64)> = results
            .iter()
            .filter(|(_, t, _)| *t >= u64::from(od.success_rate_request_volume))
            .map(|&(i, t, ok)| (i, rate(t, ok)))
            .collect();
        if sr.len() >= od.success_rate_minimum_hosts as usize && !sr.is_empty() {
            let mean = sr.iter().map(|(_, r)| r).sum::<f64>() / sr.len() as f64;
            let var = sr.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / sr.len() as f64;
            let limit = mean - var.sqrt() * f64::from(od.success_rate_stdev_factor) / 1000.0;
            for (i, r) in &sr {
                if *r < limit
                    && let Some(h) = state.hosts.get(*i)
                {
                    changed |= self.try_eject(h, od, Rule::SuccessRate);
                }
            }
        }
        let fp: Vec<(usize, f64)> = results
            .iter()
            .filter(|(_, t, _)| *t >= u64::from(od.failure_percentage_request_volume))
            .map(|&(i, t, ok)| (i, 100.0 - rate(t, ok)))
            .collect();
        if fp.len() >= od.failure_percentage_minimum_hosts as usize {
            for (i, failed) in &fp {
                if *failed >= f64::from(od.failure_percentage_threshold)
                    && let Some(h) = state.hosts.get(*i)
                {
                    changed |= self.try_eject(h, od, Rule::FailurePercentage);
                }
            }
        }
        if changed {
            self.hosts_changed();
        }
    }
}

/// How often the sweep runs: the configured interval.
pub(crate) fn interval(od: Option<&OutlierDetection>) -> Option<Duration> {
    od.map(|o| o.interval)
}
