//! The time axis shared by the text and SVG Gantt charts: from the earliest
//! step to the window's end (or the plan's end, if later). When the time
//! before T0 is longer than the window, it is drawn compressed into the first
//! quarter of the width, so the window stays readable.

use crate::Plan;
use crate::units_fmt;

pub struct Axis {
    /// (from, to) times and the fraction of the width each piece starts at.
    pieces: Vec<Piece>,
    pub start: i64,
    pub end: i64,
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
        let mut end = plan.end.max(window_end).max(earliest + 60);
        if end <= 0 {
            end = 60;
        }
        let before = -earliest;
        let pieces = if before > end {
            vec![
                Piece { from: earliest, to: 0, x0: 0.0, x1: 0.25 },
                Piece { from: 0, to: end, x0: 0.25, x1: 1.0 },
            ]
        } else {
            vec![Piece { from: earliest, to: end, x0: 0.0, x1: 1.0 }]
        };
        Axis { pieces, start: earliest, end }
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

    /// Where the axis is broken (compressed before it), as a fraction.
    pub fn break_at(&self) -> Option<f64> {
        (self.pieces.len() > 1).then(|| self.pieces[1].x0)
    }

    /// Labelled tick times: a round step per piece, at most about `max` in all.
    pub fn ticks(&self, max: usize) -> Vec<(i64, String)> {
        let mut ticks = Vec::new();
        for p in &self.pieces {
            let share = ((p.x1 - p.x0) * max as f64).floor().max(2.0) as i64;
            let step = nice_step((p.to - p.from) / share.max(1));
            let mut t = p.from.div_euclid(step) * step;
            if t < p.from {
                t += step;
            }
            while t <= p.to {
                if !ticks.iter().any(|(x, _)| *x == t) {
                    ticks.push((t, units_fmt::offset(t)));
                }
                t += step;
            }
        }
        ticks
    }
}

/// The smallest round duration not below `secs`.
fn nice_step(secs: i64) -> i64 {
    const STEPS: [i64; 14] = [
        60, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 2_592_000,
    ];
    STEPS.iter().copied().find(|s| *s >= secs).unwrap_or(secs.max(1))
}
