//! `cutover explain CODE`: what a finding's code means, like `rustc
//! --explain`. The pages are compiled into the binary (the planner's rule
//! registry and the language's codes), so they work wherever `cutover` is,
//! and plan outputs point here instead of at files of this repository.

use anyhow::bail;
use std::process::ExitCode;

/// Print the page of a diagnostic code.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = "Examples:\n  cutover explain ttl-not-lowered\n  cutover explain unknown-name\n  cutover explain --list"
)]
pub struct ExplainArgs {
    /// The code, as a finding shows it in `error[CODE]` or `warning[CODE]`
    /// (`ttl-not-lowered`, `unknown-name`).
    #[arg(value_name = "CODE", required_unless_present = "list")]
    pub code: Option<String>,
    /// List every code with its one-line summary instead.
    #[arg(long, conflicts_with = "code")]
    pub list: bool,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let text = match &args.code {
        Some(code) if !args.list => page(code)?,
        _ => list(),
    };
    super::print_bytes(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The page of `code`: a planner rule's page, or a language code's meaning.
fn page(code: &str) -> anyhow::Result<String> {
    let wanted = code.trim().to_ascii_lowercase();
    if let Some(rule) = cutover_plan::lint::rule(&wanted) {
        return Ok(rule.page());
    }
    if let Some(code) = cutover_lang::Code::from_name(&wanted) {
        return Ok(format!(
            "# {code} (error)\n\n{}.\n\n`cutover check` reports it at the line where it is, with a one-line fix; \
             the runbook is not run or planned until it is fixed.\n",
            capitalized(code.meaning())
        ));
    }
    match cutover_lang::closest(&wanted, codes()) {
        Some(near) => bail!("unknown code `{code}`; did you mean `{near}`?"),
        None => bail!("unknown code `{code}`; `cutover explain --list` lists them"),
    }
}

/// Every code with its summary, the planner's rules first.
fn list() -> String {
    let mut out = String::from("Planner rules (cutover plan, cutover check):\n");
    for rule in cutover_plan::lint::RULES {
        out.push_str(&format!("  {:<27} {}\n", rule.code, rule.summary));
    }
    out.push_str("\nLanguage errors (cutover check):\n");
    for code in cutover_lang::Code::ALL {
        out.push_str(&format!("  {:<27} {}\n", code.as_str(), code.meaning()));
    }
    out
}

fn codes() -> impl Iterator<Item = &'static str> {
    cutover_plan::lint::RULES
        .iter()
        .map(|r| r.code)
        .chain(cutover_lang::Code::ALL.iter().map(|c| c.as_str()))
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
