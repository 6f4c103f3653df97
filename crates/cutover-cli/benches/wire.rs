//! zstd on the agent wire against rsync's compression: the first full copy of a compressible
//! 2 GiB image (an ext4 file system image of real files from `/usr`, built with
//! `mkfs.ext4 -d`) through a real OpenSSH server in a network namespace, over a veth link
//! shaped with `tc tbf` to 100 Mbit and to 1 Gbit. At each speed, rounds interleave
//! `cutover run` of a one-step runbook (`image.copy` to a `via ssh` host) with `rsync -z`,
//! `rsync -z --compress-choice=zlib` and `rsync -z --compress-choice=zstd` over the same
//! link, each into an absent destination. (rsync 3.2 and later negotiate `-z` to the best
//! method both ends have, zstd at level 3 between two 3.5s; zlib is what `-z` was before.)
//!
//! Prints each run (wall time, data and wire bytes) and a table of medians with the ratios
//! to `rsync -z` and to rsync's best, and the load average while measured. Needs root
//! (namespaces), `ip`, `tc`, `sshd`, `rsync` and `mkfs.ext4`; elsewhere it says so.
//! `cargo bench -p cutover-cli --bench wire`. `CUTOVER_BENCH_DIR` holds the image and the
//! copies (default: the temporary folder; about 4.5 GB), `CUTOVER_WIRE_IMAGE` names an
//! image to use instead of building one, `CUTOVER_BENCH_ROUNDS_SLOW` and
//! `CUTOVER_BENCH_ROUNDS_FAST` the rounds at 100 Mbit (default 1) and 1 Gbit (default 3;
//! 0 leaves that speed out).
//! `CUTOVER_BENCH_RAW=1` adds a run with compression off (`CUTOVER_WIRE_ZSTD=off`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE_BYTES: u64 = 2 << 30;

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A network namespace joined to this one by a veth pair, both ends shaped alike.
struct Link {
    ns: String,
    host_if: String,
    ns_if: String,
    ns_ip: String,
}

impl Link {
    fn up() -> Option<Link> {
        let id = std::process::id() % 10_000;
        let used = String::from_utf8(
            Command::new("ip")
                .args(["-o", "addr"])
                .output()
                .ok()?
                .stdout,
        )
        .ok()?;
        // A /30 in 10.251.0.0/16 no interface here has yet.
        let (a, b) = (0..256u32)
            .map(|i| ((id + i) % 256, 0))
            .find(|(a, b)| !used.contains(&format!("10.251.{a}.{b}")))?;
        let link = Link {
            ns: format!("cutover-wire-{id}"),
            host_if: format!("cwire{id}a"),
            ns_if: format!("cwire{id}b"),
            ns_ip: format!("10.251.{a}.{}", b + 2),
        };
        let host_ip = format!("10.251.{a}.{}/30", b + 1);
        let ok = run("ip", &["netns", "add", &link.ns])
            && run(
                "ip",
                &[
                    "link",
                    "add",
                    &link.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &link.ns_if,
                    "netns",
                    &link.ns,
                ],
            )
            && run("ip", &["addr", "add", &host_ip, "dev", &link.host_if])
            && run("ip", &["link", "set", &link.host_if, "up"])
            && run(
                "ip",
                &[
                    "-n",
                    &link.ns,
                    "addr",
                    "add",
                    &format!("{}/30", link.ns_ip),
                    "dev",
                    &link.ns_if,
                ],
            )
            && run("ip", &["-n", &link.ns, "link", "set", &link.ns_if, "up"])
            && run("ip", &["-n", &link.ns, "link", "set", "lo", "up"]);
        ok.then_some(link)
    }

    /// Both directions to `bits` a second: a token bucket with 10 ms of burst (at least
    /// 256 KiB) and 200 ms of queue, as the lab shapes its links.
    fn shape(&self, bits: u64) {
        let burst = (bits / 8 / 100).max(256 << 10).to_string();
        let rate = format!("{bits}bit");
        for (ns, dev) in [(None, &self.host_if), (Some(&self.ns), &self.ns_if)] {
            let mut args: Vec<&str> = Vec::new();
            if let Some(ns) = ns {
                args.extend(["-n", ns.as_str()]);
            }
            args.extend([
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
                "latency", "200ms",
            ]);
            must("tc", &args);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

/// An sshd in the namespace, with generated keys; its sessions find this build's `cutover`.
struct Sshd {
    child: std::process::Child,
    base: PathBuf,
}

impl Sshd {
    fn start(base: &Path, link: &Link) -> Sshd {
        fs::create_dir_all(base).unwrap();
        for key in ["host_key", "user_key"] {
            let _ = fs::remove_file(base.join(key));
            let _ = fs::remove_file(base.join(format!("{key}.pub")));
            must(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    base.join(key).to_str().unwrap(),
                ],
            );
        }
        fs::copy(base.join("user_key.pub"), base.join("authorized_keys")).unwrap();
        let bin = base.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let _ = fs::remove_file(bin.join("cutover"));
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cutover"), bin.join("cutover")).unwrap();
        fs::write(
            base.join("sshd_config"),
            format!(
                "ListenAddress {}\nPort 22\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSetEnv PATH={}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
                link.ns_ip,
                base.join("host_key").display(),
                base.join("authorized_keys").display(),
                base.join("sshd.pid").display(),
                bin.display()
            ),
        )
        .unwrap();
        fs::write(
            base.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n",
                base.join("user_key").display()
            ),
        )
        .unwrap();
        let wrapper = bin.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                base.join("ssh_config").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &link.ns, "/usr/sbin/sshd", "-D", "-f"])
            .arg(base.join("sshd_config"))
            .arg("-E")
            .arg(base.join("sshd.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sshd = Sshd {
            child,
            base: base.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run(
            "/usr/bin/ssh",
            &[
                "-F",
                base.join("ssh_config").to_str().unwrap(),
                &format!("root@{}", link.ns_ip),
                "true",
            ],
        ) {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        sshd
    }

    fn ssh_config(&self) -> String {
        self.base.join("ssh_config").display().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the image: an ext4 file system of hard-linked (or, across file systems, copied)
/// folders of `/usr`, as many as fit in about 1.9 GB of files.
fn build_image(dir: &Path) -> PathBuf {
    let image = dir.join("usr.img");
    if image.exists() {
        return image;
    }
    let tree = dir.join("tree");
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(tree.join("lib")).unwrap();
    let mut total = 0u64;
    for folder in [
        "bin",
        "sbin",
        "include",
        "share",
        "lib/x86_64-linux-gnu",
        "libexec",
    ] {
        let from = Path::new("/usr").join(folder);
        let du = Command::new("du")
            .args(["-sb"])
            .arg(&from)
            .output()
            .unwrap();
        let bytes: u64 = String::from_utf8_lossy(&du.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        if total + bytes > 1_900_000_000 {
            continue;
        }
        let to = tree.join(folder);
        let linked = run("cp", &["-al", from.to_str().unwrap(), to.to_str().unwrap()]);
        if !linked {
            let _ = fs::remove_dir_all(&to);
            must("cp", &["-a", from.to_str().unwrap(), to.to_str().unwrap()]);
        }
        total += bytes;
    }
    fs::File::create(&image)
        .unwrap()
        .set_len(IMAGE_BYTES)
        .unwrap();
    must(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            tree.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    );
    let _ = fs::remove_dir_all(&tree);
    println!(
        "  built {}: {:.2} GB of files from /usr in a {} GiB ext4 image",
        image.display(),
        total as f64 / 1e9,
        IMAGE_BYTES >> 30
    );
    image
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Cutover,
    CutoverRaw,
    RsyncZ,
    RsyncZlib,
    RsyncZstd,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Cutover => "cutover (zstd, adaptive)",
            Tool::CutoverRaw => "cutover, compression off",
            Tool::RsyncZ => "rsync -z",
            Tool::RsyncZlib => "rsync -z --compress-choice=zlib",
            Tool::RsyncZstd => "rsync -z --compress-choice=zstd",
        }
    }
}

struct Measured {
    secs: f64,
    /// The copy alone (cutover's act, from its evidence).
    copy_secs: Option<f64>,
    data: u64,
    wire: u64,
}

fn rsync(tool: Tool, image: &Path, dest: &Path, sshd: &Sshd, link: &Link) -> Measured {
    let ssh = format!("/usr/bin/ssh -F {}", sshd.ssh_config());
    let target = format!("root@{}:{}", link.ns_ip, dest.join("usr.img").display());
    let mut args = vec!["-z", "--stats", "-e", &ssh];
    match tool {
        Tool::RsyncZstd => args.push("--compress-choice=zstd"),
        Tool::RsyncZlib => args.push("--compress-choice=zlib"),
        _ => {}
    }
    let started = Instant::now();
    let out = Command::new("rsync")
        .args(&args)
        .arg(image)
        .arg(&target)
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8_lossy(&out.stdout);
    let figure = |label: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .replace(',', "")
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Measured {
        secs,
        copy_secs: None,
        data: figure("Literal data: "),
        wire: figure("Total bytes sent: "),
    }
}

fn cutover(
    tool: Tool,
    image: &Path,
    dest: &Path,
    sshd: &Sshd,
    link: &Link,
    work: &Path,
) -> Measured {
    let dir = work.join("runbook");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let runbook = dir.join("wire.runbook");
    fs::write(
        &runbook,
        format!(
            "runbook wire\n\n\
             host near addr 127.0.0.1 via local {}\n\
             host far addr {ip} via ssh root@{ip}:22\n\n\
             step copy\n  image.copy near:/{} -> far:{}/usr.img\n",
            image.parent().unwrap().display(),
            image.file_name().unwrap().to_str().unwrap(),
            dest.display(),
            ip = link.ns_ip,
        ),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        sshd.base.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let policy = if tool == Tool::CutoverRaw {
        "off"
    } else {
        "auto"
    };
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["run", runbook.to_str().unwrap(), "--t0", "now"])
        .env("PATH", path)
        .env("CUTOVER_WIRE_ZSTD", policy)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "cutover run: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let export = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["export", runbook.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let export: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    let evidence = export["steps"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["phase"] == "act")
        .expect("the copy's act evidence")
        .clone();
    let act = &evidence["data"];
    // The copy's own time, as its summary says it ("... in 51.4s, blake3 ...").
    let copy_secs = evidence["summary"].as_str().and_then(|summary| {
        let (_, after) = summary.rsplit_once(" in ")?;
        after.split_once('s')?.0.parse::<f64>().ok()
    });
    Measured {
        secs,
        copy_secs,
        data: act["bytes_sent"].as_u64().unwrap_or(0),
        wire: act["wire_bytes_out"].as_u64().unwrap_or(0),
    }
}

/// What `rsync -z` negotiates between the two ends here (its `NSTR` debug
/// lines), for a small file: checksum and compression.
fn rsync_negotiates(image: &Path, work: &Path, sshd: &Sshd, link: &Link) -> String {
    let probe = work.join("negotiate.bin");
    let mut head = vec![0u8; 1 << 16];
    let read = fs::File::open(image).and_then(|mut f| std::io::Read::read(&mut f, &mut head));
    fs::write(&probe, &head[..read.unwrap_or(0)]).unwrap();
    let ssh = format!("/usr/bin/ssh -F {}", sshd.ssh_config());
    let target = format!(
        "root@{}:{}",
        link.ns_ip,
        work.join("negotiated.bin").display()
    );
    let out = Command::new("rsync")
        .args(["-z", "--debug=NSTR2", "-e", &ssh])
        .arg(&probe)
        .arg(&target)
        .output()
        .unwrap();
    let _ = fs::remove_file(&probe);
    let _ = fs::remove_file(work.join("negotiated.bin"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter_map(|l| l.strip_prefix("Client negotiated "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    println!(
        "wire: first full copy of a 2 GiB ext4 image of /usr files through ssh over a shaped link"
    );
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let tools = ["ip", "tc", "rsync", "mkfs.ext4", "/usr/sbin/sshd"];
    if !is_root
        || !tools
            .iter()
            .all(|t| run("sh", &["-c", &format!("command -v {t}")]))
    {
        println!("  needs root and {}: not measured here", tools.join(", "));
        return;
    }
    let work = std::env::var_os("CUTOVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("cutover-wire-{}", std::process::id()))
        });
    fs::create_dir_all(&work).unwrap();
    let image = match std::env::var_os("CUTOVER_WIRE_IMAGE") {
        Some(image) => PathBuf::from(image),
        None => build_image(&work),
    };
    let Some(link) = Link::up() else {
        println!("  network namespaces cannot be made here: not measured");
        return;
    };
    let sshd = Sshd::start(&work.join("sshd"), &link);
    let dest = work.join("dest");
    let mut tools = vec![
        Tool::Cutover,
        Tool::RsyncZ,
        Tool::RsyncZlib,
        Tool::RsyncZstd,
    ];
    if std::env::var("CUTOVER_BENCH_RAW").is_ok_and(|v| v == "1") {
        tools.push(Tool::CutoverRaw);
    }
    let version = Command::new("rsync").arg("--version").output().unwrap();
    println!(
        "  {}; rsync -z negotiates {}",
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("rsync"),
        rsync_negotiates(&image, &work, &sshd, &link)
    );
    // Warm the source's page cache, as every run after the first would find it.
    must("cat", &[image.to_str().unwrap()]);
    let mut table = Vec::new();
    for (label, bits, rounds) in [
        (
            "100 Mbit",
            100_000_000u64,
            env_number("CUTOVER_BENCH_ROUNDS_SLOW", 1),
        ),
        (
            "1 Gbit",
            1_000_000_000,
            env_number("CUTOVER_BENCH_ROUNDS_FAST", 3),
        ),
    ] {
        if rounds == 0 {
            continue;
        }
        link.shape(bits);
        println!(
            "  {label} ({rounds} round(s), tools interleaved), load before {}",
            loadavg()
        );
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
        let mut wires: Vec<u64> = vec![0; tools.len()];
        for round in 1..=rounds {
            for (t, &tool) in tools.iter().enumerate() {
                let _ = fs::remove_dir_all(&dest);
                fs::create_dir_all(&dest).unwrap();
                must("sync", &[]);
                let m = match tool {
                    Tool::Cutover | Tool::CutoverRaw => {
                        cutover(tool, &image, &dest, &sshd, &link, &work)
                    }
                    _ => rsync(tool, &image, &dest, &sshd, &link),
                };
                if round == 1 {
                    assert!(
                        run(
                            "cmp",
                            &[
                                "-s",
                                image.to_str().unwrap(),
                                dest.join("usr.img").to_str().unwrap()
                            ]
                        ),
                        "{}: the copy differs from the source",
                        tool.name()
                    );
                }
                println!(
                    "    round {round} {:<32} {:>7.2} s{}; {:>6.0} MiB of data, {:>6.0} MiB on the wire ({:.2}x), load {}",
                    tool.name(),
                    m.secs,
                    m.copy_secs
                        .map_or(String::new(), |c| format!(" (copy {c:.2} s)")),
                    m.data as f64 / 1048576.0,
                    m.wire as f64 / 1048576.0,
                    m.data as f64 / m.wire.max(1) as f64,
                    loadavg()
                );
                times[t].push(m.secs);
                wires[t] = m.wire;
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        table.push((label, rounds, medians, wires, loadavg()));
    }
    drop(sshd);
    drop(link);
    if std::env::var_os("CUTOVER_BENCH_DIR").is_none() {
        let _ = fs::remove_dir_all(&work);
    } else {
        let _ = fs::remove_dir_all(&dest);
    }
    println!(
        "\n  | link (rounds) | tool | median s | MiB on the wire | vs rsync -z | vs rsync -z zlib | vs rsync's best | load after |"
    );
    println!("  |---|---|---|---|---|---|---|---|");
    for (label, rounds, medians, wires, load) in &table {
        let (rsync_z, zlib) = (medians[1], medians[2]);
        let best = medians[1].min(medians[2]).min(medians[3]);
        for (t, tool) in tools.iter().enumerate() {
            println!(
                "  | {label} ({rounds}) | {} | {:.2} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {load} |",
                tool.name(),
                medians[t],
                wires[t] as f64 / 1048576.0,
                rsync_z / medians[t],
                zlib / medians[t],
                best / medians[t],
            );
        }
    }
    println!("  (ratios: the rsync run's median time over this tool's; above 1 is faster)");
}
