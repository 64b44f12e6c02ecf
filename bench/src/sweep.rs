//! The open-loop sweep: GetMovieDetails at constant rates from a tenth of
//! its measured saturation to all of it, then finer steps around the knee,
//! the latency percentiles of each step timed from the intended send times
//! (coordinated omission accounted for, as in [`crate::load::OpenLoop`]).
use serde::{Deserialize, Serialize};

use crate::load::LoadSummary;

/// The coarse steps, as shares of the saturation throughput.
pub const COARSE_SHARES: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Finer steps added between the knee and the coarse step after it.
pub const FINE_STEPS: u32 = 3;

/// A step is below the knee while its p99 stays within this factor of the
/// lightest step's: past it, queueing, not service time, makes the tail.
pub const KNEE_P99_FACTOR: f64 = 3.0;

/// ... and while it achieves at least this share of the offered rate, with
/// no failed request.
pub const KNEE_ACHIEVED_SHARE: f64 = 0.97;

/// One constant-rate run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Requests per second on the schedule.
    pub offered_rps: f64,
    /// Requests recorded per second.
    pub achieved_rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Failed requests (any gRPC error, deadlines included).
    pub errors: u64,
    /// Share of the machine's CPU time (all cores) busy during the run, 0 to 1.
    pub machine_busy: Option<f64>,
}

impl Step {
    pub fn from_summary(offered_rps: f64, summary: &LoadSummary, machine_busy: Option<f64>) -> Self {
        Step {
            offered_rps,
            achieved_rps: summary.requests_per_s,
            p50_us: summary.p50_us,
            p90_us: summary.p90_us,
            p99_us: summary.p99_us,
            p999_us: summary.p999_us,
            errors: summary.requests - summary.ok,
            machine_busy,
        }
    }
}

/// One target's steps, by offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Curve {
    /// The last step below the knee (see [`knee`]).
    pub fn knee(&self) -> Option<&Step> {
        knee(&self.steps).map(|index| &self.steps[index])
    }
}

/// A sweep of one or more targets at the same absolute rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The saturation throughput the rates are shares of (the first
    /// curve's, measured in closed loop), requests/s.
    pub saturation_rps: f64,
    pub curves: Vec<Curve>,
}

/// The index of the last step (by offered rate, `steps` in that order)
/// before the knee: every step up to it kept up with its rate, failed no
/// request, and kept its p99 within [`KNEE_P99_FACTOR`] of the lightest
/// step's. `None` when even the lightest step did not.
pub fn knee(steps: &[Step]) -> Option<usize> {
    let baseline = steps.first()?.p99_us.max(1) as f64;
    let below = |step: &Step| {
        step.errors == 0
            && step.achieved_rps >= KNEE_ACHIEVED_SHARE * step.offered_rps
            && step.p99_us as f64 <= KNEE_P99_FACTOR * baseline
    };
    steps.iter().position(|step| !below(step)).map_or(Some(steps.len() - 1), |first_past| first_past.checked_sub(1))
}

/// The finer rates to add for `steps` (sorted by offered rate, the coarse
/// ones measured): [`FINE_STEPS`] evenly between the knee's step and the
/// next one, none when the knee is the last step or there is none.
pub fn refinement(steps: &[Step]) -> Vec<f64> {
    let Some(index) = knee(steps) else { return Vec::new() };
    let Some(next) = steps.get(index + 1) else { return Vec::new() };
    let (low, high) = (steps[index].offered_rps, next.offered_rps);
    (1..=FINE_STEPS).map(|k| low + (high - low) * f64::from(k) / f64::from(FINE_STEPS + 1)).collect()
}

/// Sweeps every named target at the same rates: the coarse shares of
/// `saturation_rps`, then the union of each curve's refinement, each rate
/// measured against every target (in the order of `names`) by `measure`.
pub fn run(
    names: &[&str],
    saturation_rps: f64,
    mut measure: impl FnMut(&str, f64) -> anyhow::Result<Step>,
) -> anyhow::Result<Sweep> {
    anyhow::ensure!(saturation_rps > 0.0, "no saturation throughput to sweep up to");
    let mut curves: Vec<Curve> =
        names.iter().map(|name| Curve { name: (*name).to_owned(), steps: Vec::new() }).collect();
    let mut measure_all = |rates: &[f64], curves: &mut Vec<Curve>| -> anyhow::Result<()> {
        for &rate in rates {
            for curve in curves.iter_mut() {
                curve.steps.push(measure(&curve.name, rate)?);
            }
        }
        for curve in curves.iter_mut() {
            curve.steps.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
        }
        Ok(())
    };
    let coarse: Vec<f64> = COARSE_SHARES.iter().map(|share| (share * saturation_rps).round().max(1.0)).collect();
    measure_all(&coarse, &mut curves)?;
    let mut fine: Vec<f64> = curves.iter().flat_map(|curve| refinement(&curve.steps)).map(f64::round).collect();
    fine.sort_by(f64::total_cmp);
    fine.dedup();
    fine.retain(|rate| !coarse.contains(rate));
    measure_all(&fine, &mut curves)?;
    Ok(Sweep { saturation_rps, curves })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that keeps up to `capacity` requests/s, its p99 growing as
    /// the queue would (1 / (1 - utilisation)), failing past its capacity.
    fn queue(capacity: f64) -> impl Fn(f64) -> Step {
        move |rate: f64| {
            let utilisation = rate / capacity;
            let p99_us = if utilisation < 1.0 { (200.0 / (1.0 - utilisation)) as u64 } else { 5_000_000 };
            Step {
                offered_rps: rate,
                achieved_rps: rate.min(capacity),
                p50_us: p99_us / 4,
                p90_us: p99_us / 2,
                p99_us,
                p999_us: p99_us * 2,
                errors: if utilisation < 1.0 { 0 } else { 1 },
                machine_busy: Some(utilisation.min(1.0)),
            }
        }
    }

    #[test]
    fn the_knee_is_the_last_step_whose_tail_stays_near_the_lightest() {
        let server = queue(1000.0);
        let steps: Vec<Step> = [100.0, 300.0, 600.0, 700.0, 800.0].map(&server).to_vec();
        // p99: 222, 285, 500, 666 (within 3 × 222), 1000 (past it).
        assert_eq!(knee(&steps), Some(3));
        assert_eq!(knee(&steps[..4]), Some(3));
        assert_eq!(knee(&[]), None);
        let mut failing_first = steps.clone();
        failing_first[0].errors = 1;
        assert_eq!(knee(&failing_first), None);
        let mut behind = steps.clone();
        behind[2].achieved_rps = 0.9 * behind[2].offered_rps;
        assert_eq!(knee(&behind), Some(1));
        assert_eq!(refinement(&steps), vec![725.0, 750.0, 775.0]);
        assert_eq!(refinement(&steps[..4]), Vec::<f64>::new());
    }

    #[test]
    fn every_target_is_measured_at_the_same_rates_coarse_then_around_each_knee() {
        let (rust, go) = (queue(10_000.0), queue(6_000.0));
        let mut asked = Vec::new();
        let sweep = run(&["this suite", "Go"], 10_000.0, |name, rate| {
            asked.push((name.to_owned(), rate));
            Ok(if name == "Go" { go(rate) } else { rust(rate) })
        })
        .unwrap();
        assert_eq!(sweep.saturation_rps, 10_000.0);
        let rates = |curve: &Curve| curve.steps.iter().map(|step| step.offered_rps).collect::<Vec<_>>();
        assert_eq!(rates(&sweep.curves[0]), rates(&sweep.curves[1]));
        // Of the coarse rates, this suite's knee is at 7,000 (p99 666 µs against 222 at 1,000), Go's at 4,000
        // (p99 600 against 240): three finer rates after each, which move Go's to 4,250 (p99 685).
        assert_eq!(sweep.curves[0].knee().map(|step| step.offered_rps), Some(7000.0));
        assert_eq!(sweep.curves[1].knee().map(|step| step.offered_rps), Some(4250.0));
        let expected: Vec<f64> = vec![
            1000.0, 2000.0, 3000.0, 4000.0, 4250.0, 4500.0, 4750.0, 5000.0, 6000.0, 7000.0, 7250.0, 7500.0, 7750.0,
            8000.0, 9000.0, 10000.0,
        ];
        assert_eq!(rates(&sweep.curves[0]), expected);
        // Both targets at one rate, then the next.
        assert_eq!(asked[..2], [("this suite".to_owned(), 1000.0), ("Go".to_owned(), 1000.0)]);
        assert_eq!(asked.len(), 2 * expected.len());
        assert!(run(&["this suite"], 0.0, |_, rate| Ok(rust(rate))).is_err());
    }
}
