//! The time axis (milliseconds) shared by the text and SVG Gantt charts: from the earliest
//! step to the window's end (or the plan's end, if later). When the time
//! before T0 is longer than the window, it is drawn compressed into the first
//! fifth of the width, and follow-ups long after the window into the last
//! eighth, so the window stays readable.

use crate::Plan;
use crate::units_fmt;

pub struct Axis {
    /// (from, to) times and the fraction of the width each piece starts at.
    pieces: Vec<Piece>,
    pub start: i64,
    pub end: i64,
    /// Where the axis is broken (compressed beyond), as fractions.
    pub breaks: Vec<f64>,
    /// The compressed stretches, as (from, to) fractions.
    pub compressed: Vec<(f64, f64)>,
}

struct Piece {
    from: i64,
    to: i64,
    x0: f64,
    x1: f64,
}

impl Axis {
    pub fn new(plan: &Plan) -> Axis {
        let earliest = plan.steps.iter().map(|s| s.start).min().unwrap_or(0).min(0);
        let window_end = plan.window.map_or(0, |w| w.length);
        let main_end = plan.end.max(window_end).max(60_000);
        let end = plan.last_end.max(main_end);
        // The cutover itself gets most of the width; long stretches before
        // T0 and follow-ups long after it are compressed at either side.
        let main = main_end as f64;
        let compress_before = -earliest as f64 > main;
        let compress_after = (end - main_end) as f64 > main / 2.0;
        let x0 = if compress_before {
            0.2
        } else {
            -earliest as f64 / (end - earliest) as f64
        };
        let x1 = if compress_after {
            0.88
        } else if compress_before {
            x0 + (1.0 - x0) * main / (end as f64)
        } else {
            (main_end - earliest) as f64 / (end - earliest) as f64
        };
        let mut pieces = Vec::new();
        if earliest < 0 {
            pieces.push(Piece {
                from: earliest,
                to: 0,
                x0: 0.0,
                x1: x0,
            });
        }
        pieces.push(Piece {
            from: 0,
            to: main_end,
            x0,
            x1,
        });
        if end > main_end {
            pieces.push(Piece {
                from: main_end,
                to: end,
                x0: x1,
                x1: 1.0,
            });
        }
        let breaks = [compress_before.then_some(x0), compress_after.then_some(x1)];
        let compressed = [
            compress_before.then_some((0.0, x0)),
            compress_after.then_some((x1, 1.0)),
        ];
        Axis {
            pieces,
            start: earliest,
            end,
            breaks: breaks.into_iter().flatten().collect(),
            compressed: compressed.into_iter().flatten().collect(),
        }
    }

    /// Where `t` falls, from 0 (left) to 1 (right).
    pub fn x(&self, t: i64) -> f64 {
        let t = t.clamp(self.start, self.end);
        for p in &self.pieces {
            if t <= p.to {
                let span = (p.to - p.from).max(1) as f64;
                return p.x0 + (p.x1 - p.x0) * (t - p.from) as f64 / span;
            }
        }
        1.0
    }

    /// Labelled tick times: a round step per piece, at most about `max` in all.
    pub fn ticks(&self, max: usize) -> Vec<(i64, String)> {
        let mut ticks = vec![(self.start, units_fmt::offset_ms(self.start))];
        for p in &self.pieces {
            let share = ((p.x1 - p.x0) * max as f64).floor().max(2.0) as i64;
            let step = nice_step((p.to - p.from) / share.max(1));
            let mut t = p.from.div_euclid(step) * step;
            if t < p.from {
                t += step;
            }
            while t <= p.to {
                if !ticks.iter().any(|(x, _)| *x == t) {
                    ticks.push((t, units_fmt::offset_ms(t)));
                }
                t += step;
            }
        }
        ticks
    }
}

/// The smallest round duration (in milliseconds) not below `ms`.
fn nice_step(ms: i64) -> i64 {
    const STEPS: [i64; 14] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
        2_592_000,
    ];
    STEPS
        .iter()
        .map(|s| s * 1000)
        .find(|s| *s >= ms)
        .unwrap_or(ms.max(1))
}
