//! How `cutover run` and `cutover rollback` show a run. On a terminal,
//! indicatif bars: an overall line with steps done of the total and an
//! ETA that counts down, a line per running step (a copy's bar with bytes,
//! percent, rate and ETA; a countdown with the time it ends, and the date
//! when that is more than a day away; the latest message, e.g. which DNS
//! servers still lag), one line per finished step saying what it changed,
//! and a closing recap. Without a terminal, plain timestamped lines and no
//! escape sequences; with `--format json`, one JSON object per event. Also
//! the questions of `--step` mode and manual gates, read from stdin line by
//! line.

use chrono::{DateTime, Local, Utc};
use cutover_engine::{
    BoxFuture, Decision, Prompter, Recap, Reporter, RunEvent, StepOutcome, describe_duration,
};
use cutover_lang::{Step, printable};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Draws run events.
pub struct TerminalReporter {
    mode: Mode,
    /// A prompter asks at this terminal: a manual gate's instructions are
    /// its prompt, not a line of their own.
    asks: AtomicBool,
    /// The bars are hidden while a question waits for its answer, so the
    /// prompt and what is typed stay on screen; lines then print plainly.
    paused: AtomicBool,
    /// Plain lines and JSON: when each step's progress was last printed.
    printed_progress: Mutex<HashMap<String, Instant>>,
    /// The recap of the run, once it ended.
    recap: Mutex<Option<Recap>>,
}

enum Mode {
    Plain,
    Bars(Bars),
    Json,
}

/// Plain lines show a step's progress at most this often (and its end).
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// JSON events of a step's progress come at most this often (and its end).
const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What the ticking thread redraws twice a second: the countdowns of the
/// running steps, the overall ETA, the wait for the next `at` time.
#[derive(Default)]
struct Ticking {
    /// By step: until when, the label, the step's line.
    countdowns: HashMap<String, (DateTime<Utc>, String, ProgressBar)>,
    /// The planned time left, and when it was said.
    eta: Option<(Duration, Instant)>,
    /// The whole run waits for this step's `at` time.
    waiting: Option<(DateTime<Utc>, String)>,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Mutex<HashMap<String, ProgressBar>>,
    ticking: Arc<Mutex<Ticking>>,
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A step's line while it checks, acts or verifies.
const STEP_LINE: &str = "  {spinner} {prefix:.bold} {msg}";
/// A step's line once it reports bytes of a known total (a copy).
const BYTES_LINE: &str = "  {spinner} {prefix:.bold} [{bar:24}] {binary_bytes}/{binary_total_bytes} {percent:>3}%  {binary_bytes_per_sec}  {msg}";

/// `ETA 1m05s`: a step's estimate of its time left.
fn eta_text(eta: Duration) -> String {
    format!(
        "ETA {}",
        describe_duration(Duration::from_secs(eta.as_secs()))
    )
}

/// `4m12s left, until 18:23:05`; the date too when it is more than a day
/// away (`until 2026-12-03 18:23:05`).
fn left(until: DateTime<Utc>) -> String {
    let secs = (until - Utc::now()).num_seconds().max(0).unsigned_abs();
    let local = until.with_timezone(&Local);
    let at = if secs > 86_400 {
        local.format("%Y-%m-%d %H:%M:%S")
    } else {
        local.format("%H:%M:%S")
    };
    format!(
        "{} left, until {at}",
        describe_duration(Duration::from_secs(secs))
    )
}

/// The mark before a finished step's line.
fn mark(outcome: StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Verified | StepOutcome::Unverified | StepOutcome::Undone => "✓",
        StepOutcome::AlreadySatisfied => "=",
        StepOutcome::Skipped => "-",
        StepOutcome::AttemptFailed => "!",
        StepOutcome::Failed => "✗",
        StepOutcome::Interrupted => "…",
    }
}

/// `verified — what it changed`, `already satisfied — what holds`.
fn finished_text(outcome: StepOutcome, summary: &str, changed: Option<&str>) -> String {
    let word = match outcome {
        StepOutcome::Failed => "FAILED",
        other => other.as_str(),
    };
    format!("{word} — {}", sanitize(changed.unwrap_or(summary)))
}

impl TerminalReporter {
    /// Bars when `fancy` (stdout is a terminal), plain lines otherwise.
    pub fn new(fancy: bool) -> TerminalReporter {
        let mode = if fancy {
            Mode::Bars(Bars::new())
        } else {
            Mode::Plain
        };
        TerminalReporter::with_mode(mode)
    }

    /// One JSON object per line on stdout (`run --format json`); other
    /// lines go to stderr.
    pub fn json() -> TerminalReporter {
        TerminalReporter::with_mode(Mode::Json)
    }

    fn with_mode(mode: Mode) -> TerminalReporter {
        TerminalReporter {
            mode,
            asks: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            printed_progress: Mutex::default(),
            recap: Mutex::default(),
        }
    }

    /// Says that a [`StdinPrompter`] asks at this terminal.
    pub fn asking(self, asks: bool) -> TerminalReporter {
        self.asks.store(asks, Ordering::SeqCst);
        self
    }

    fn bars(&self) -> Option<&Bars> {
        match &self.mode {
            Mode::Bars(bars) => Some(bars),
            _ => None,
        }
    }

    /// Clears the bars from the screen and stops drawing them until
    /// [`TerminalReporter::resume`]: a question is being asked.
    pub fn pause(&self) {
        if let Some(bars) = self.bars() {
            self.paused.store(true, Ordering::SeqCst);
            let _ = bars.multi.clear();
            bars.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
    }

    /// Draws the bars again after [`TerminalReporter::pause`].
    pub fn resume(&self) {
        if let Some(bars) = self.bars() {
            bars.multi.set_draw_target(ProgressDrawTarget::stdout());
            self.paused.store(false, Ordering::SeqCst);
        }
    }

    /// Where lines go now: above the bars, or plainly while they are
    /// paused or absent.
    fn bars_drawn(&self) -> Option<&Bars> {
        self.bars().filter(|_| !self.paused.load(Ordering::SeqCst))
    }

    /// Prints a line above the bars (or plainly; to stderr in JSON mode).
    pub fn println(&self, text: &str) {
        match (&self.mode, self.bars_drawn()) {
            (_, Some(bars)) => {
                let _ = bars.multi.println(text);
            }
            (Mode::Json, _) => eprintln!("{text}"),
            _ => out_line(text),
        }
    }

    /// Stops drawing and clears the bars: what stays on screen are the
    /// lines printed above them.
    pub fn finish(&self) {
        if let Some(bars) = self.bars() {
            if let Ok(mut lines) = bars.lines.lock() {
                for (_, bar) in lines.drain() {
                    bar.finish_and_clear();
                }
            }
            bars.overall.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }

    /// The run's recap, once the engine sent it.
    pub fn recap(&self) -> Option<Recap> {
        self.recap.lock().ok().and_then(|r| r.clone())
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
            RunEvent::WaitingUntil { step, until } => {
                format!("{now} waiting for step {step}: {}", left(*until))
            }
            RunEvent::StepStarted { step } => format!("{now} {step}: started"),
            RunEvent::Phase { step, phase } => format!("{now} {step}: {}", phase.as_str()),
            RunEvent::Progress {
                step,
                done,
                total,
                unit,
                eta,
            } => {
                let finished = *total == Some(*done);
                if !self.progress_due(step, finished, PLAIN_PROGRESS_EVERY) {
                    return;
                }
                let eta = eta.map_or(String::new(), |eta| format!(", {}", eta_text(eta)));
                format!("{now} {step}: {}{eta}", progress_text(*done, *total, unit))
            }
            RunEvent::Countdown { step, until, label } => {
                format!("{now} {step}: {}: {}", sanitize(label), left(*until))
            }
            RunEvent::Message {
                step: Some(step),
                text,
            } => format!("{now} {step}: {}", sanitize(text)),
            RunEvent::Message { step: None, text } => format!("{now} {}", sanitize(text)),
            RunEvent::Gate { step, instructions } => {
                if self.asks.load(Ordering::SeqCst) {
                    return;
                }
                format!(
                    "{now} {step}: waiting for confirmation: {} — confirm with `cutover confirm {step}`",
                    sanitize(instructions)
                )
            }
            RunEvent::StepFinished {
                step,
                outcome,
                summary,
                changed,
                ..
            } => format!(
                "{now} {step}: {}",
                finished_text(*outcome, summary, changed.as_deref())
            ),
            RunEvent::Warning { text } => format!("{now} warning: {}", sanitize(text)),
            RunEvent::Finished { .. } => return,
        };
        out_line(&line);
    }

    /// Whether to print a progress line for `step` now: its first, then at
    /// most one per `every`, and the one that ends it, so a long copy does
    /// not flood a log.
    fn progress_due(&self, step: &str, finished: bool, every: Duration) -> bool {
        let Ok(mut printed) = self.printed_progress.lock() else {
            return true;
        };
        let now = Instant::now();
        let due = finished
            || printed
                .get(step)
                .is_none_or(|at| now.duration_since(*at) >= every);
        if due {
            printed.insert(step.to_owned(), now);
        }
        due
    }

    fn json_event(&self, event: &RunEvent) {
        if let RunEvent::Progress {
            step, done, total, ..
        } = event
            && !self.progress_due(step, *total == Some(*done), JSON_PROGRESS_EVERY)
        {
            return;
        }
        out_line(&event.to_json().to_string());
    }
}

/// `12.0 MiB of 160.0 MiB (7%)`, `3.0 MiB of 12.0 MiB copied (25%)`,
/// `3 of 10 tables (30%)`, `512 B of lag`: the unit once, a unit counted
/// in bytes (`bytes`, `bytes copied`, `bytes of lag`) in IEC sizes (the
/// dashboard writes the same).
fn progress_text(done: u64, total: Option<u64>, unit: &str) -> String {
    let in_bytes = unit
        .strip_prefix("bytes")
        .filter(|rest| rest.is_empty() || rest.starts_with(' '));
    let amount = |n: u64| match in_bytes {
        Some(_) => cutover_engine::describe_size(n),
        None => n.to_string(),
    };
    let rest = in_bytes.map_or_else(|| format!(" {unit}"), str::to_owned);
    match total {
        Some(total) if total > 0 => format!(
            "{} of {}{rest} ({}%)",
            amount(done),
            amount(total),
            done.saturating_mul(100) / total
        ),
        _ => format!("{}{rest}", amount(done)),
    }
}

/// Prints a line to stdout, ignoring a terminal that has gone away (a
/// SIGHUP stop must still be recorded, not end in a panic on write).
fn out_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(bar_style(
            "{elapsed_precise:.dim} [{bar:24}] {pos}/{len} steps  {msg}",
        ));
        overall.enable_steady_tick(Duration::from_millis(250));
        let ticking: Arc<Mutex<Ticking>> = Arc::default();
        let weak = Arc::downgrade(&ticking);
        let line = overall.clone();
        std::thread::spawn(move || {
            while let Some(ticking) = weak.upgrade() {
                if let Ok(ticking) = ticking.lock() {
                    ticking.redraw(&line);
                }
                drop(ticking);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Bars {
            multi,
            overall,
            lines: Mutex::default(),
            ticking,
        }
    }

    fn tick(&self, change: impl FnOnce(&mut Ticking)) {
        if let Ok(mut ticking) = self.ticking.lock() {
            change(&mut ticking);
            ticking.redraw(&self.overall);
        }
    }

    /// The line of `step`, made when first needed.
    fn line(&self, lines: &mut HashMap<String, ProgressBar>, step: &str) -> ProgressBar {
        lines
            .entry(step.to_owned())
            .or_insert_with(|| {
                let bar = self
                    .multi
                    .insert_before(&self.overall, ProgressBar::new_spinner());
                bar.set_style(bar_style(STEP_LINE));
                bar.set_prefix(step.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }
}

impl Ticking {
    fn redraw(&self, overall: &ProgressBar) {
        for (until, label, bar) in self.countdowns.values() {
            bar.set_message(format!("{}: {}", sanitize(label), left(*until)));
        }
        let eta = self.eta.map(|(eta, said)| {
            format!(
                "ETA {}",
                describe_duration(Duration::from_secs(
                    eta.saturating_sub(said.elapsed()).as_secs()
                ))
            )
        });
        let waiting = self
            .waiting
            .as_ref()
            .map(|(until, step)| format!("next: {step}, {}", left(*until)));
        overall.set_message(
            [eta, waiting]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("  "),
        );
    }
}

impl Reporter for TerminalReporter {
    fn event(&self, event: &RunEvent) {
        if let RunEvent::Finished { recap } = event
            && let Ok(mut slot) = self.recap.lock()
        {
            *slot = Some(recap.clone());
        }
        let bars = match &self.mode {
            Mode::Json => return self.json_event(event),
            Mode::Plain => return self.plain(event),
            Mode::Bars(bars) => bars,
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
        let println = |text: String| {
            if !self.paused.load(Ordering::SeqCst) {
                let _ = bars.multi.println(text);
            }
        };
        let Ok(mut lines) = bars.lines.lock() else {
            return;
        };
        match event {
            RunEvent::Started { total, done, eta } => {
                bars.overall.set_length(*total as u64);
                bars.overall.set_position(*done as u64);
                bars.tick(|t| t.eta = Some((*eta, Instant::now())));
            }
            RunEvent::WaitingUntil { step, until } => {
                bars.tick(|t| t.waiting = Some((*until, step.clone())));
            }
            RunEvent::StepStarted { step } => {
                bars.tick(|t| t.waiting = None);
                bars.line(&mut lines, step).set_message("starting");
            }
            RunEvent::Phase { step, phase } => {
                bars.line(&mut lines, step).set_message(phase.as_str())
            }
            RunEvent::Progress {
                step,
                done,
                total,
                unit,
                eta,
            } => {
                let bar = bars.line(&mut lines, step);
                match total {
                    Some(total) if *unit == "bytes" => {
                        if bar.length() != Some(*total) {
                            // From a spinner to a bar: the rate counts
                            // from here.
                            bar.set_style(bar_style(BYTES_LINE));
                            bar.set_length(*total);
                            bar.reset();
                        }
                        bar.set_position(*done);
                        // The step's own estimate where it makes one (a
                        // copy's knows its phases); else one from the bar.
                        bar.set_message(eta.map_or_else(
                            || format!("ETA {}", describe_duration(bar.eta())),
                            eta_text,
                        ));
                    }
                    _ => bar.set_message(progress_text(*done, *total, unit)),
                }
            }
            RunEvent::Countdown { step, until, label } => {
                let bar = bars.line(&mut lines, step);
                bars.tick(|t| {
                    t.countdowns
                        .insert(step.clone(), (*until, label.clone(), bar));
                });
            }
            RunEvent::Message { step, text } => {
                let text = sanitize(text);
                match step {
                    Some(step) => {
                        if let Some(bar) = lines.get(step) {
                            bar.set_message(text.clone());
                        }
                        println(format!("  {step}: {text}"));
                    }
                    None => println(text),
                }
            }
            RunEvent::Gate { step, instructions } => {
                if !self.asks.load(Ordering::SeqCst) {
                    let text = format!(
                        "waiting for confirmation: {} — confirm with `cutover confirm {step}`",
                        sanitize(instructions)
                    );
                    bars.line(&mut lines, step).set_message(text);
                }
            }
            RunEvent::StepFinished {
                step,
                outcome,
                summary,
                changed,
                eta,
            } => {
                bars.tick(|t| {
                    t.countdowns.remove(step);
                    t.eta = Some((*eta, Instant::now()));
                });
                if let Some(bar) = lines.remove(step) {
                    bar.finish_and_clear();
                }
                println(format!(
                    "{} {step}: {}",
                    mark(*outcome),
                    finished_text(*outcome, summary, changed.as_deref())
                ));
                if matches!(
                    outcome,
                    StepOutcome::AlreadySatisfied
                        | StepOutcome::Verified
                        | StepOutcome::Unverified
                        | StepOutcome::Skipped
                ) {
                    bars.overall.inc(1);
                }
            }
            RunEvent::Warning { text } => println(format!("warning: {}", sanitize(text))),
            RunEvent::Finished { .. } => {}
        }
    }
}

/// The closing lines of a run, like Terraform's "Apply complete!": what
/// the selected steps came to, the time against the plan, the
/// deviations, where the report is.
pub fn recap_lines(recap: &Recap, export: &str) -> Vec<String> {
    let head = match recap.outcome {
        "completed" => "Run complete!",
        "stopped" => "Run stopped.",
        "failed" => "Run failed.",
        _ => "Run blocked.",
    };
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut counts = vec![
        format!("{} done", recap.done),
        format!("{} already satisfied", recap.already_satisfied),
        format!("{} skipped", recap.skipped),
        format!("{} failed", recap.failed),
    ];
    if recap.not_run > 0 {
        counts.push(format!("{} not run", recap.not_run));
    }
    let took = recap.took.as_secs();
    let planned = recap.planned.as_secs();
    let against = match took.cmp(&planned) {
        std::cmp::Ordering::Greater => format!(
            "{} over",
            describe_duration(Duration::from_secs(took - planned))
        ),
        std::cmp::Ordering::Less => format!(
            "{} under",
            describe_duration(Duration::from_secs(planned - took))
        ),
        std::cmp::Ordering::Equal => "on plan".into(),
    };
    let mut lines = vec![
        format!(
            "{head} {}: {}.",
            plural(recap.total, "step", "steps"),
            counts.join(", ")
        ),
        format!(
            "Took {} against {} planned ({against}).",
            describe_duration(Duration::from_secs(took)),
            describe_duration(recap.planned)
        ),
    ];
    if recap.deviations.is_empty() {
        lines.push("Deviations: none.".into());
    } else {
        lines.push(format!("Deviations ({}):", recap.deviations.len()));
        lines.extend(
            recap
                .deviations
                .iter()
                .map(|d| format!("  {}", sanitize(d))),
        );
    }
    lines.push(format!("Report: `{export}`"));
    lines
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

impl StdinPrompter {
    /// Shows `what`, then asks `question` until `run`, `skip` or `stop` is
    /// typed (the whole word; `words` lists them in the order asked); stop
    /// at the end of input.
    async fn decide(&self, what: String, question: String, words: &str) -> Decision {
        let mut lines = self.lines.lock().await;
        let _asking = Asking::start(&self.reporter);
        out_line(&what);
        let since = StdinPrompter::discard_typed_ahead(&mut lines);
        loop {
            StdinPrompter::ask(&question);
            let Some(answer) = StdinPrompter::answer(&mut lines, since).await else {
                out_line("");
                return Decision::Stop;
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "run" => return Decision::Run,
                "skip" => return Decision::Skip,
                "stop" => return Decision::Stop,
                other => out_line(&format!(
                    "`{}` is not an answer: type {words} (the whole word)",
                    sanitize(other)
                )),
            }
        }
    }
}

/// `tcflush(stdin, TCIFLUSH)` when stdin is a terminal: input typed before
/// a question is shown is thrown away.
pub(crate) fn discard_pending_terminal_input() {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let _ = rustix::termios::tcflush(std::io::stdin(), rustix::termios::QueueSelector::IFlush);
    }
}

impl Prompter for StdinPrompter {
    fn before_step<'a>(&'a self, step: &'a Step, what: &'a str) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide(
            format!("\nnext:\n{}", printable(what, false)),
            format!("`{}`: type run, skip or stop and Enter: ", step.name),
            "run, skip or stop",
        ))
    }

    fn after_skip<'a>(&'a self, step: &'a Step, skipped: &'a Step) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide(
            format!(
                "\n`{}` depends on `{}`, which was skipped.",
                step.name, skipped.name
            ),
            format!(
                "`{}`: type skip (skip it too), run (run it anyway) or stop and Enter: ",
                step.name
            ),
            "skip, run or stop",
        ))
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
                "\nmanual step `{}` waits for confirmation (or run `cutover confirm {}` elsewhere):",
                step.name, step.name
            ));
            let since = StdinPrompter::discard_typed_ahead(&mut lines);
            loop {
                StdinPrompter::ask(&format!(
                    "{} — type yes and Enter once done (a note may follow): ",
                    sanitize(instructions)
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

/// Text from a runbook, a server or a person on one line of the
/// terminal: control characters (escape sequences among them, line breaks
/// too) shown as `\u{..}` escapes ([`printable`], the one escaper).
fn sanitize(text: &str) -> String {
    printable(text, true).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_countdown_beyond_a_day_names_the_date() {
        let soon = Utc::now() + chrono::Duration::seconds(90);
        let text = left(soon);
        assert!(text.starts_with("1m"), "{text}");
        assert!(!text.contains('-'), "{text}");
        let later = Utc::now() + chrono::Duration::days(3);
        let text = left(later);
        let date = later.with_timezone(&Local).format("%Y-%m-%d").to_string();
        assert!(
            text.starts_with("2d23h59m") || text.starts_with("3d"),
            "{text}"
        );
        assert!(text.contains(&format!("until {date} ")), "{text}");
    }

    #[test]
    fn the_recap_counts_steps_times_and_deviations() {
        let recap = Recap {
            outcome: "stopped",
            total: 5,
            done: 2,
            already_satisfied: 1,
            skipped: 1,
            failed: 0,
            not_run: 1,
            took: Duration::from_secs(130),
            planned: Duration::from_secs(100),
            deviations: vec!["freeze: skipped by --skip\u{1b}[2J".into()],
        };
        assert_eq!(
            recap_lines(&recap, "cutover export move.runbook"),
            [
                "Run stopped. 5 steps: 2 done, 1 already satisfied, 1 skipped, 0 failed, 1 not run.",
                "Took 2m10s against 1m40s planned (30s over).",
                "Deviations (1):",
                "  freeze: skipped by --skip\\u{1b}[2J",
                "Report: `cutover export move.runbook`",
            ]
        );
    }

    #[test]
    fn progress_reads_in_iec_units_with_a_percentage() {
        assert_eq!(
            progress_text(12 << 20, Some(160 << 20), "bytes"),
            "12.0 MiB of 160.0 MiB (7%)"
        );
        assert_eq!(progress_text(3, Some(10), "tables"), "3 of 10 tables (30%)");
        assert_eq!(progress_text(512, None, "bytes of lag"), "512 B of lag");
        assert_eq!(
            progress_text(3 << 20, Some(12 << 20), "bytes copied"),
            "3.0 MiB of 12.0 MiB copied (25%)"
        );
        assert_eq!(
            progress_text(40, Some(100), "rows copied"),
            "40 of 100 rows copied (40%)"
        );
        assert_eq!(
            progress_text(7, None, "transactions of lag"),
            "7 transactions of lag"
        );
    }
}
