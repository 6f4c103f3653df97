//! How `cutover run` and `cutover rollback` show a run: indicatif bars on a
//! terminal (an overall bar with steps done, elapsed time and the planned
//! ETA, a line per running step, countdowns), plain timestamped lines
//! otherwise; and the questions of `--step` mode and manual gates, read
//! from stdin line by line.

use chrono::{DateTime, Local, Utc};
use cutover_engine::{
    BoxFuture, Decision, Prompter, Reporter, RunEvent, StepOutcome, describe_duration,
};
use cutover_lang::Step;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Draws run events.
pub struct TerminalReporter {
    bars: Option<Bars>,
    /// The bars are hidden while a question waits for its answer, so the
    /// prompt and what is typed stay on screen; lines then print plainly.
    paused: AtomicBool,
    /// Plain lines: when each step's progress was last printed.
    printed_progress: Mutex<HashMap<String, Instant>>,
}

/// Plain lines show a step's progress at most this often (and its end).
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Running countdowns by step: until when, the label, the step's line.
type Countdowns = Arc<Mutex<HashMap<String, (DateTime<Utc>, String, ProgressBar)>>>;

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Mutex<HashMap<String, ProgressBar>>,
    countdowns: Countdowns,
}

fn outcome_word(outcome: StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::AlreadySatisfied => "already satisfied",
        StepOutcome::Verified => "verified",
        StepOutcome::Unverified => "done (unverified)",
        StepOutcome::AttemptFailed => "attempt failed",
        StepOutcome::Failed => "FAILED",
        StepOutcome::Skipped => "skipped",
        StepOutcome::Interrupted => "interrupted",
        StepOutcome::Undone => "undone",
    }
}

fn left(until: DateTime<Utc>) -> String {
    describe_duration(Duration::from_secs(
        (until - Utc::now()).num_seconds().max(0).unsigned_abs(),
    ))
}

impl TerminalReporter {
    /// Bars when `fancy` (stdout is a terminal and not `--step` mode),
    /// plain lines otherwise.
    pub fn new(fancy: bool) -> TerminalReporter {
        if !fancy {
            return TerminalReporter {
                bars: None,
                paused: AtomicBool::new(false),
                printed_progress: Mutex::default(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise:.dim} [{bar:30}] {pos}/{len} steps  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.enable_steady_tick(Duration::from_millis(250));
        let countdowns: Countdowns = Arc::default();
        let ticking = Arc::downgrade(&countdowns);
        std::thread::spawn(move || {
            while let Some(countdowns) = ticking.upgrade() {
                if let Ok(map) = countdowns.lock() {
                    for (until, label, bar) in map.values() {
                        bar.set_message(format!("{label}: {} left", left(*until)));
                    }
                }
                drop(countdowns);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        TerminalReporter {
            bars: Some(Bars {
                multi,
                overall,
                lines: Mutex::default(),
                countdowns,
            }),
            paused: AtomicBool::new(false),
            printed_progress: Mutex::default(),
        }
    }

    /// Clears the bars from the screen and stops drawing them until
    /// [`TerminalReporter::resume`]: a question is being asked.
    pub fn pause(&self) {
        if let Some(bars) = &self.bars {
            self.paused.store(true, Ordering::SeqCst);
            let _ = bars.multi.clear();
            bars.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    /// Draws the bars again after [`TerminalReporter::pause`].
    pub fn resume(&self) {
        if let Some(bars) = &self.bars {
            bars.multi.set_draw_target(ProgressDrawTarget::stdout());
            self.paused.store(false, Ordering::SeqCst);
        }
    }

    /// Where lines go now: above the bars, or plainly while they are
    /// paused or absent.
    fn bars_drawn(&self) -> Option<&Bars> {
        self.bars
            .as_ref()
            .filter(|_| !self.paused.load(Ordering::SeqCst))
    }

    /// Prints a line above the bars (or plainly).
    pub fn println(&self, text: &str) {
        match self.bars_drawn() {
            Some(bars) => {
                let _ = bars.multi.println(text);
            }
            None => out_line(text),
        }
    }

    /// Stops drawing (the bars stay on screen as they are).
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.overall.abandon();
            if let Ok(mut lines) = bars.lines.lock() {
                for (_, bar) in lines.drain() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn plain(&self, event: &RunEvent) {
        let now = Local::now().format("%H:%M:%S");
        let line = match event {
            RunEvent::Started { total, done, eta } => {
                format!(
                    "{now} run: {done}/{total} steps done, planned time left {}",
                    describe_duration(*eta)
                )
            }
            RunEvent::WaitingUntil { step, until } => format!(
                "{now} waiting until {} ({} left) for step {step}",
                until.with_timezone(&Local).format("%H:%M:%S"),
                left(*until)
            ),
            RunEvent::StepStarted { step } => format!("{now} {step}: started"),
            RunEvent::Phase { step, phase } => format!("{now} {step}: {}", phase.as_str()),
            RunEvent::Progress {
                step,
                done,
                total,
                unit,
            } => {
                if !self.progress_line_due(step, *total == Some(*done)) {
                    return;
                }
                match total {
                    Some(total) => format!("{now} {step}: {done}/{total} {unit}"),
                    None => format!("{now} {step}: {done} {unit}"),
                }
            }
            RunEvent::Countdown { step, until, label } => {
                format!(
                    "{now} {step}: {label} until {} ({} left)",
                    until.with_timezone(&Local).format("%H:%M:%S"),
                    left(*until)
                )
            }
            RunEvent::Message {
                step: Some(step),
                text,
            } => format!("{now} {step}: {text}"),
            RunEvent::Message { step: None, text } => format!("{now} {text}"),
            RunEvent::StepFinished {
                step,
                outcome,
                summary,
                ..
            } => {
                format!("{now} {step}: {} — {summary}", outcome_word(*outcome))
            }
            RunEvent::Warning { text } => format!("{now} warning: {text}"),
        };
        out_line(&line);
    }

    /// Whether to print a progress line for `step` now: its first, then at
    /// most one per [`PLAIN_PROGRESS_EVERY`], and the one that ends it, so a
    /// long copy does not flood a log.
    fn progress_line_due(&self, step: &str, finished: bool) -> bool {
        let Ok(mut printed) = self.printed_progress.lock() else {
            return true;
        };
        let now = Instant::now();
        let due = finished
            || printed
                .get(step)
                .is_none_or(|at| now.duration_since(*at) >= PLAIN_PROGRESS_EVERY);
        if due {
            printed.insert(step.to_owned(), now);
        }
        due
    }
}

/// Prints a line to stdout, ignoring a terminal that has gone away (a
/// SIGHUP stop must still be recorded, not end in a panic on write).
fn out_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

impl Reporter for TerminalReporter {
    fn event(&self, event: &RunEvent) {
        let Some(bars) = &self.bars else {
            self.plain(event);
            return;
        };
        if self.paused.load(Ordering::SeqCst) {
            // Keep the bars' state current, but print only what a person
            // needs to see while answering (finished steps, warnings).
            if matches!(
                event,
                RunEvent::StepFinished { .. } | RunEvent::Warning { .. } | RunEvent::Message { .. }
            ) {
                self.plain(event);
            }
        }
        let Ok(mut lines) = bars.lines.lock() else {
            return;
        };
        let line_for = |lines: &mut HashMap<String, ProgressBar>, step: &str| {
            lines
                .entry(step.to_owned())
                .or_insert_with(|| {
                    let bar = bars.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(step.to_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                })
                .clone()
        };
        match event {
            RunEvent::Started { total, done, eta } => {
                bars.overall.set_length(*total as u64);
                bars.overall.set_position(*done as u64);
                bars.overall
                    .set_message(format!("ETA {}", describe_duration(*eta)));
            }
            RunEvent::WaitingUntil { step, until } => {
                bars.overall.set_message(format!(
                    "waiting until {} for {step}",
                    until.with_timezone(&Local).format("%H:%M:%S")
                ));
            }
            RunEvent::StepStarted { step } => line_for(&mut lines, step).set_message("starting"),
            RunEvent::Phase { step, phase } => {
                line_for(&mut lines, step).set_message(phase.as_str())
            }
            RunEvent::Progress {
                step,
                done,
                total,
                unit,
            } => {
                let bar = line_for(&mut lines, step);
                match total {
                    Some(total) => bar.set_message(format!("{done}/{total} {unit}")),
                    None => bar.set_message(format!("{done} {unit}")),
                }
            }
            RunEvent::Countdown { step, until, label } => {
                let bar = line_for(&mut lines, step);
                if let Ok(mut map) = bars.countdowns.lock() {
                    map.insert(step.clone(), (*until, label.clone(), bar));
                }
            }
            RunEvent::Message { step, text } => {
                let _ = bars.multi.println(match step {
                    Some(step) => format!("{step}: {text}"),
                    None => text.clone(),
                });
            }
            RunEvent::StepFinished {
                step,
                outcome,
                summary,
                eta,
            } => {
                if let Ok(mut map) = bars.countdowns.lock() {
                    map.remove(step);
                }
                if let Some(bar) = lines.remove(step) {
                    bar.finish_and_clear();
                }
                let _ = bars
                    .multi
                    .println(format!("{step}: {} — {summary}", outcome_word(*outcome)));
                if matches!(
                    outcome,
                    StepOutcome::AlreadySatisfied
                        | StepOutcome::Verified
                        | StepOutcome::Unverified
                        | StepOutcome::Skipped
                ) {
                    bars.overall.inc(1);
                }
                bars.overall
                    .set_message(format!("ETA {}", describe_duration(*eta)));
            }
            RunEvent::Warning { text } => {
                let _ = bars.multi.println(format!("warning: {text}"));
            }
        }
    }
}

/// Asks at the terminal. One reader thread reads stdin line by line and
/// stamps each line with when it arrived; a question takes only lines typed
/// after it was shown: pending terminal input is discarded (`tcflush`) and
/// lines that arrived earlier are dropped, so nothing typed ahead — a `yes`
/// meant for another gate, a word typed during a verification — answers
/// it. Answers are whole words (`yes`, `run`, `skip`, `stop`), never a
/// single key.
pub struct StdinPrompter {
    lines: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>>,
    reporter: Arc<TerminalReporter>,
}

/// Hides the bars while a question is on screen; shows them again when the
/// question is answered or dropped (confirmed from another terminal).
struct Asking<'a>(&'a TerminalReporter);

impl<'a> Asking<'a> {
    fn start(reporter: &'a TerminalReporter) -> Asking<'a> {
        reporter.pause();
        Asking(reporter)
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

impl StdinPrompter {
    /// Starts the reader thread (it ends at end of input or with the process).
    pub fn start(reporter: Arc<TerminalReporter>) -> StdinPrompter {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if send.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        StdinPrompter {
            lines: tokio::sync::Mutex::new(receive),
            reporter,
        }
    }

    /// Discards what was typed before now: the terminal's pending input,
    /// and lines the reader thread already took. Returns the instant from
    /// which lines count as answers.
    fn discard_typed_ahead(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
    ) -> Instant {
        discard_pending_terminal_input();
        while lines.try_recv().is_ok() {}
        Instant::now()
    }

    /// The next line typed after `since`; None at end of input.
    async fn answer(
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
        since: Instant,
    ) -> Option<String> {
        loop {
            let (at, line) = lines.recv().await?;
            if at >= since {
                return Some(line);
            }
        }
    }

    fn ask(question: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{question}");
        let _ = stdout.flush();
    }
}

/// `tcflush(stdin, TCIFLUSH)` when stdin is a terminal: input typed before
/// a question is shown is thrown away.
pub(crate) fn discard_pending_terminal_input() {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        // SAFETY: tcflush on file descriptor 0 only discards queued input;
        // it reads or writes no memory of ours.
        unsafe {
            libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH);
        }
    }
}

impl Prompter for StdinPrompter {
    fn before_step<'a>(&'a self, step: &'a Step, what: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let mut lines = self.lines.lock().await;
            let _asking = Asking::start(&self.reporter);
            out_line(&format!("\nnext:\n{what}"));
            let since = StdinPrompter::discard_typed_ahead(&mut lines);
            loop {
                StdinPrompter::ask(&format!(
                    "`{}`: type run, skip or stop and Enter: ",
                    step.name
                ));
                let Some(answer) = StdinPrompter::answer(&mut lines, since).await else {
                    out_line("");
                    return Decision::Stop;
                };
                match answer.trim().to_ascii_lowercase().as_str() {
                    "run" => return Decision::Run,
                    "skip" => return Decision::Skip,
                    "stop" => return Decision::Stop,
                    other => out_line(&format!(
                        "`{}` is not an answer: type run, skip or stop (the whole word)",
                        sanitize(other)
                    )),
                }
            }
        })
    }

    fn confirm_manual<'a>(
        &'a self,
        step: &'a Step,
        instructions: &'a str,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut lines = self.lines.lock().await;
            let _asking = Asking::start(&self.reporter);
            out_line(&format!(
                "\nmanual step `{}` waits for confirmation:\n  {}",
                step.name,
                sanitize(instructions)
            ));
            let since = StdinPrompter::discard_typed_ahead(&mut lines);
            loop {
                StdinPrompter::ask(&format!(
                    "type yes and Enter once it is done (a note may follow), or run `cutover confirm {}` elsewhere: ",
                    step.name
                ));
                let answer = StdinPrompter::answer(&mut lines, since).await?;
                let answer = answer.trim();
                let (word, note) = answer
                    .split_once(char::is_whitespace)
                    .unwrap_or((answer, ""));
                if word.eq_ignore_ascii_case("yes") {
                    return Some(note.trim().to_owned());
                }
                out_line(&format!(
                    "not confirmed (`{}`): type the word yes to confirm `{}`",
                    sanitize(answer),
                    step.name
                ));
            }
        })
    }
}

/// Text from a runbook or a person, safe to echo on a terminal: control
/// characters (escape sequences among them) are shown as `\u{..}` escapes.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
