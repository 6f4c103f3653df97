//! `cutover dns`: DNS tools. `serve` runs an authoritative server from zone files that accepts
//! TSIG-signed updates and that real secondaries follow (a hidden primary); `secondary` runs a copy of a primary's zones that
//! follows it late on purpose (the lab's lagging secondary).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use cutover_dns::{
    LoadedFrom, NotifyTargets, SecondaryConfig, ServeConfig, ServeOptions, ServerHandle,
    TsigAlgorithm, TsigKey, ZoneSource,
};

#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    pub command: DnsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DnsCommand {
    /// Serve zones authoritatively and accept TSIG-signed updates, until Ctrl-C.
    ///
    /// Every change is written to a journal in the state directory; when a zone's journal
    /// exists it is served instead of the zone file, so a restart keeps the updates. After each
    /// change the zone's secondaries are sent NOTIFY, and they may transfer it by AXFR or IXFR.
    ///
    /// Example: cutover dns serve --zone maemo.org=maemo.org.zone --listen 127.0.0.1:5353
    /// --key-file maemo-update.key --state-dir state/
    Serve(ServeArgs),
    /// Serve a copy of a primary's zones that applies each change only after a delay.
    ///
    /// The copy is made by zone transfer (AXFR); the primary's serial is checked every
    /// --check-every, and a newer zone is transferred once --lag has passed since it was seen.
    ///
    /// Example: cutover dns secondary --primary 127.0.0.1:5353 --zone maemo.org
    /// --listen 127.0.0.2:5353 --lag 30s
    Secondary(SecondaryArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A zone and its master file, as NAME=FILE (repeatable).
    #[arg(long = "zone", value_name = "NAME=FILE", required = true)]
    zones: Vec<String>,
    /// Address to answer on, UDP and TCP (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:5353")]
    listen: Vec<SocketAddr>,
    /// A TSIG key file: a BIND key file (all its keys), or NAME=FILE for a file holding just
    /// the base64 secret (hmac-sha256) (repeatable).
    #[arg(long = "key-file", value_name = "[NAME=]FILE")]
    key_files: Vec<String>,
    /// A TSIG key from an environment variable holding a BIND key block or the base64
    /// secret, as NAME:VAR or NAME:ALGORITHM:VAR (repeatable).
    #[arg(long = "key-env", value_name = "NAME:VAR")]
    key_envs: Vec<String>,
    /// Where the zone journals are kept.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// An address allowed to transfer the zones by AXFR or IXFR (repeatable; none by default).
    #[arg(long = "allow-transfer", value_name = "IP")]
    allow_transfer: Vec<IpAddr>,
    /// A secondary to send NOTIFY after each change, as IP:PORT (repeatable). Default: the
    /// zones' name servers (NS) other than the SOA's primary, at port 53.
    #[arg(long = "notify", value_name = "ADDR", conflicts_with = "no_notify")]
    notify: Vec<SocketAddr>,
    /// Send no NOTIFY: secondaries find changes at their SOA refresh.
    #[arg(long)]
    no_notify: bool,
}

#[derive(Debug, clap::Args)]
pub struct SecondaryArgs {
    /// The primary to copy from.
    #[arg(long, value_name = "ADDR")]
    primary: SocketAddr,
    /// A zone to copy (repeatable).
    #[arg(long = "zone", value_name = "NAME", required = true)]
    zones: Vec<String>,
    /// Address to answer on, UDP and TCP (repeatable).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:5354")]
    listen: Vec<SocketAddr>,
    /// How long a change on the primary stays invisible here (e.g. 500ms, 30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    lag: Duration,
    /// How often the primary's serial is checked.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    check_every: Duration,
    /// A TSIG key file to sign the transfers with ([NAME=]FILE, as for `serve`).
    #[arg(long = "key-file", value_name = "[NAME=]FILE")]
    key_file: Option<String>,
}

pub fn run(args: DnsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let handle = match args.command {
            DnsCommand::Serve(args) => start_primary(args).await?,
            DnsCommand::Secondary(args) => start_secondary(args).await?,
        };
        let mut notified = handle.notify_events();
        tokio::spawn(async move {
            loop {
                match notified.recv().await {
                    Ok(event) => println!("{event}"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        println!("({missed} NOTIFY outcomes not shown)")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        for zone in handle.zones() {
            let from = match zone.loaded_from {
                LoadedFrom::ZoneFile => "zone file",
                LoadedFrom::Journal => "journal",
                LoadedFrom::Transfer => "zone transfer",
            };
            println!("zone {} serial {} (from {from})", zone.name, zone.serial);
        }
        for address in handle.addresses() {
            println!("listening on {address} (udp, tcp)");
        }
        println!("press Ctrl-C to stop");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        handle.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn start_primary(args: ServeArgs) -> anyhow::Result<ServerHandle> {
    let zones = args
        .zones
        .iter()
        .map(|zone| {
            let (name, file) = zone
                .split_once('=')
                .with_context(|| format!("--zone `{zone}`: expected NAME=FILE"))?;
            Ok(ZoneSource {
                name: name.to_string(),
                file: PathBuf::from(file),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut keys = Vec::new();
    for spec in &args.key_files {
        keys.extend(load_key_file(spec)?);
    }
    for spec in &args.key_envs {
        keys.push(load_key_env(spec)?);
    }
    if keys.is_empty() {
        eprintln!("warning: no TSIG key given: every update will be refused");
    }
    let notify = if args.no_notify {
        NotifyTargets::Addresses(Vec::new())
    } else if args.notify.is_empty() {
        NotifyTargets::NameServers
    } else {
        NotifyTargets::Addresses(args.notify)
    };
    Ok(cutover_dns::serve_with(
        ServeConfig {
            zones,
            listen: args.listen,
            keys,
            state_dir: args.state_dir,
            allow_transfer: args.allow_transfer,
        },
        ServeOptions { notify },
    )
    .await?)
}

async fn start_secondary(args: SecondaryArgs) -> anyhow::Result<ServerHandle> {
    let key = match &args.key_file {
        Some(spec) => {
            let mut keys = load_key_file(spec)?;
            if keys.len() != 1 {
                bail!(
                    "--key-file `{spec}`: holds {} keys; give a file with one",
                    keys.len()
                );
            }
            keys.pop()
        }
        None => None,
    };
    Ok(cutover_dns::serve_secondary(SecondaryConfig {
        zones: args.zones,
        primary: args.primary,
        key,
        listen: args.listen,
        lag: args.lag,
        check_every: args.check_every,
        timeout: Duration::from_secs(3),
    })
    .await?)
}

/// `FILE` (a BIND key file, every key in it) or `NAME=FILE` (that key, or a bare secret).
fn load_key_file(spec: &str) -> anyhow::Result<Vec<TsigKey>> {
    match spec.split_once('=') {
        Some((name, file)) => Ok(vec![TsigKey::from_file(
            &PathBuf::from(file),
            Some(name),
            None,
        )?]),
        None => Ok(TsigKey::all_from_file(&PathBuf::from(spec))?),
    }
}

/// `NAME:VAR` or `NAME:ALGORITHM:VAR`.
fn load_key_env(spec: &str) -> anyhow::Result<TsigKey> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, algorithm, var) = match parts.as_slice() {
        [name, var] => (*name, None, *var),
        [name, algorithm, var] => (*name, Some(algorithm.parse::<TsigAlgorithm>()?), *var),
        _ => bail!("--key-env `{spec}`: expected NAME:VAR or NAME:ALGORITHM:VAR"),
    };
    Ok(TsigKey::from_env(var, Some(name), algorithm)?)
}

/// `500ms`, `30s`, `5m`, `2h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}`: add a unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number followed by ms, s, m or h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!(
            "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_units_people_write() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("30").unwrap_err().contains("add a unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }
}
