//! Replays a synthetic week of traffic shaped like the Azure Functions 2019 trace through the
//! keep-alive policies the engine runs (`nimbus_scaling::KeepAlive`), and reports cold starts
//! and idle memory for each.
//!
//! ```text
//! cargo run --release -p nimbus-scaling --example keepalive_replay -- \
//!     --data ../shared/data/azure2019-cdfs [--apps 2000] [--days 7] [--seed 1]
//! ```
//!
//! Each synthetic app (one function, as the paper's per-app policy) draws, independently, from
//! the trace's distributions: invocations per day (`invokesCDF.csv`, capped at
//! `--max-per-day`), the coefficient of variation of its inter-arrival times (`CVs.csv`), its
//! average execution time (`execTimeCDF.csv`) and its memory (`memCDF.csv`). Arrivals are a
//! renewal process with gamma inter-arrival times of that mean and CV (CV 0: a timer, periodic
//! with a random phase). An idle period is the time from the end of the last running call to
//! the next arrival; a call that arrives while another runs finds the code loaded.

use std::path::PathBuf;
use std::time::Duration;

use nimbus_scaling::{HybridConfig, KeepAlive, KeepAlivePolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

type Error = Box<dyn std::error::Error>;

struct Args {
    data: PathBuf,
    apps: usize,
    days: f64,
    seed: u64,
    max_per_day: f64,
    /// The Nimbus hybrid row's parameters (the defaults unless given).
    hybrid: HybridConfig,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        data: PathBuf::from("../shared/data/azure2019-cdfs"),
        apps: 2000,
        days: 7.0,
        seed: 1,
        max_per_day: 1_000_000.0,
        hybrid: HybridConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => args.data = value.into(),
            "--apps" => args.apps = value.parse()?,
            "--days" => args.days = value.parse()?,
            "--seed" => args.seed = value.parse()?,
            "--max-per-day" => args.max_per_day = value.parse()?,
            "--head" => args.hybrid.head_percentile = value.parse()?,
            "--tail" => args.hybrid.tail_percentile = value.parse()?,
            "--margin" => args.hybrid.margin = value.parse()?,
            "--min-samples" => args.hybrid.min_samples = value.parse()?,
            "--max-out-of-range" => args.hybrid.max_out_of_range = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// An empirical CDF read from one of the trace's CSV files, sampled by inverse transform with
/// linear interpolation between its points.
struct Cdf {
    points: Vec<(f64, f64)>,
}

impl Cdf {
    fn load(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut points: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let mut cols = line.split(',').map(str::trim);
                let x = cols.next()?.parse().ok()?;
                let f = cols.next()?.parse().ok()?;
                Some((x, f))
            })
            .collect();
        points.sort_by(|a, b| a.1.total_cmp(&b.1));
        if points.is_empty() {
            return Err(format!("{}: no data points", path.display()).into());
        }
        Ok(Self { points })
    }

    fn sample(&self, rng: &mut StdRng) -> f64 {
        let u: f64 = rng.random();
        let i = self.points.partition_point(|p| p.1 < u);
        match (
            i.checked_sub(1).and_then(|j| self.points.get(j)),
            self.points.get(i),
        ) {
            (Some(&(x0, f0)), Some(&(x1, f1))) if f1 > f0 => x0 + (x1 - x0) * (u - f0) / (f1 - f0),
            (_, Some(&(x, _))) | (Some(&(x, _)), None) => x,
            (None, None) => 0.0,
        }
    }
}

struct App {
    per_day: f64,
    cv: f64,
    exec_s: f64,
    mem_gb: f64,
}

/// What one policy did over the whole replay.
struct Tally {
    name: &'static str,
    policy: KeepAlivePolicy,
    calls: u64,
    cold: u64,
    idle_gb_s: f64,
    app_cold_share: Vec<f64>,
}

/// One policy's state while one app is replayed.
struct Run {
    keep: KeepAlive,
    calls: u64,
    cold: u64,
    idle_gb_s: f64,
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    let invokes = Cdf::load(&args.data.join("invokesCDF.csv"))?;
    let cvs = Cdf::load(&args.data.join("CVs.csv"))?;
    let exec = Cdf::load(&args.data.join("execTimeCDF.csv"))?;
    let mem = Cdf::load(&args.data.join("memCDF.csv"))?;
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let mut tallies = [
        ("fixed 10 min", KeepAlivePolicy::Fixed(minutes(10))),
        ("fixed 20 min", KeepAlivePolicy::Fixed(minutes(20))),
        (
            "hybrid, Nimbus default (margin 5%, fallback 10 min)",
            KeepAlivePolicy::Hybrid(args.hybrid.clone()),
        ),
        (
            "hybrid, margin 10% (fallback 10 min)",
            KeepAlivePolicy::Hybrid(HybridConfig {
                margin: 0.10,
                ..args.hybrid.clone()
            }),
        ),
        (
            "hybrid, the paper's values (margin 10%, fallback 4 h)",
            KeepAlivePolicy::Hybrid(HybridConfig {
                margin: 0.10,
                fallback: minutes(240),
                ..HybridConfig::default()
            }),
        ),
    ]
    .map(|(name, policy)| Tally {
        name,
        policy,
        calls: 0,
        cold: 0,
        idle_gb_s: 0.0,
        app_cold_share: Vec::new(),
    });

    let mut rng = StdRng::seed_from_u64(args.seed);
    let horizon = args.days * 86_400.0;
    let mut capped = 0;
    let started = std::time::Instant::now();
    for _ in 0..args.apps {
        let mut per_day = invokes.sample(&mut rng).max(1.0);
        if per_day > args.max_per_day {
            per_day = args.max_per_day;
            capped += 1;
        }
        let app = App {
            per_day,
            cv: cvs.sample(&mut rng).max(0.0),
            exec_s: exec.sample(&mut rng).max(0.0) / 1000.0,
            mem_gb: mem.sample(&mut rng).max(1.0) / 1024.0,
        };
        let mut runs: Vec<Run> = tallies
            .iter()
            .map(|t| Run {
                keep: KeepAlive::new(&t.policy),
                calls: 0,
                cold: 0,
                idle_gb_s: 0.0,
            })
            .collect();
        replay_app(&app, horizon, &mut rng, &mut runs)?;
        for (tally, run) in tallies.iter_mut().zip(runs) {
            tally.calls += run.calls;
            tally.cold += run.cold;
            tally.idle_gb_s += run.idle_gb_s;
            if run.calls > 0 {
                tally
                    .app_cold_share
                    .push(run.cold as f64 / run.calls as f64);
            }
        }
    }
    report(&args, capped, started.elapsed(), &mut tallies);
    Ok(())
}

fn replay_app(app: &App, horizon: f64, rng: &mut StdRng, runs: &mut [Run]) -> Result<(), Error> {
    let mean = 86_400.0 / app.per_day;
    let gamma = if app.cv > 0.0 {
        let shape = 1.0 / (app.cv * app.cv);
        Some(Gamma::new(shape, mean / shape)?)
    } else {
        None
    };
    let next_gap = |rng: &mut StdRng| match &gamma {
        Some(g) => g.sample(rng),
        None => mean,
    };
    let mut t = rng.random::<f64>() * mean;
    let mut busy_until: Option<f64> = None;
    while t < horizon {
        match busy_until {
            None => {
                for run in runs.iter_mut() {
                    run.calls += 1;
                    run.cold += 1;
                }
            }
            Some(end) if t <= end => {
                for run in runs.iter_mut() {
                    run.calls += 1;
                }
            }
            Some(end) => {
                let idle = Duration::from_secs_f64(t - end);
                for run in runs.iter_mut() {
                    let windows = run.keep.windows();
                    run.calls += 1;
                    if !windows.warm_at(idle) {
                        run.cold += 1;
                    }
                    run.idle_gb_s += windows.warm_time(idle).as_secs_f64() * app.mem_gb;
                    run.keep.observe_idle(idle);
                }
            }
        }
        let end = t + app.exec_s;
        busy_until = Some(busy_until.map_or(end, |b: f64| b.max(end)));
        t += next_gap(rng);
    }
    // The idle period still open when the replay ends.
    if let Some(end) = busy_until.filter(|&end| end < horizon) {
        let idle = Duration::from_secs_f64(horizon - end);
        for run in runs.iter_mut() {
            run.idle_gb_s += run.keep.windows().warm_time(idle).as_secs_f64() * app.mem_gb;
        }
    }
    Ok(())
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values
        .get(rank.saturating_sub(1).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn report(args: &Args, capped: usize, took: Duration, tallies: &mut [Tally]) {
    println!("hybrid (Nimbus) parameters: {:?}", args.hybrid);
    println!(
        "keep-alive replay: {} apps, {} days, seed {}, data {} ({} apps capped at {} calls/day); replayed in {:.1} s",
        args.apps,
        args.days,
        args.seed,
        args.data.display(),
        capped,
        args.max_per_day,
        took.as_secs_f64()
    );
    let baseline = tallies
        .first()
        .map_or(1.0, |t| t.idle_gb_s.max(f64::MIN_POSITIVE));
    println!(
        "| policy | calls | cold starts | cold-start rate | p75 of apps' cold-start share | idle memory GB-s | idle memory vs fixed 10 min |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for t in tallies.iter_mut() {
        let p75 = percentile(&mut t.app_cold_share, 75.0);
        println!(
            "| {} | {} | {} | {:.3}% | {:.1}% | {:.0} | {:.1}% |",
            t.name,
            t.calls,
            t.cold,
            100.0 * t.cold as f64 / t.calls.max(1) as f64,
            100.0 * p75,
            t.idle_gb_s,
            100.0 * t.idle_gb_s / baseline
        );
    }
}
