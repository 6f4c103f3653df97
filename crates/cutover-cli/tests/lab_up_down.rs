//! `cutover lab up` / `lab down` with the real binary: the background lab serves DNS, the
//! listeners and the files of a fixture runbook at addresses it chose itself (in network
//! namespaces of its own where the machine allows, else a loopback block) and records them;
//! two labs of one runbook run side by side; a failed `up` leaves nothing built; `down` stops
//! and removes all of it. Every lab started here also stops by itself (`--stop-after`) should
//! a test fail before `down`.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/lab")
        .join(name)
}

/// The demo's runbook: a lab without database servers (its database is a SQLite file).
fn demo_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo/maemo-2013.runbook")
}

fn cutover(args: &[&str]) -> Output {
    Command::cargo_bin("cutover")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

/// Runs `lab down` on drop, so a failing test leaves nothing running.
struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = cutover(&["lab", "down", "--dir", self.0.to_str().unwrap()]);
    }
}

fn connects(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `lab up FILE --dir DIR` with a short lag and lifetime, plus `extra`; asserts success.
fn up(file: &Path, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--lag",
        "1s",
        "--stop-after",
        "5m",
    ];
    args.extend_from_slice(extra);
    let up = cutover(&args);
    let stdout = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(
        up.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    stdout
}

/// The lab's address of host `name`, from its manifest.
fn host_addr(manifest: &Value, name: &str) -> IpAddr {
    manifest["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {manifest}"))["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn dns_address(manifest: &Value, role: &str) -> SocketAddr {
    manifest["dns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == role)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The namespaces this machine has whose name holds `id`.
fn namespaces_of(id: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|name| name.contains(id))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this machine (in this namespace) has `ip` as an address or routes to it on a link of
/// its own: a lab's addresses while it is up.
fn machine_has(ip: IpAddr) -> bool {
    let route = std::process::Command::new("ip")
        .args(["-o", "route", "get", &ip.to_string()])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    route.contains(" dev cvl")
}

/// cloud-2013 replicates MariaDB: the lab runs real servers for it.
#[test]
#[ignore = "needs mariadb-server"]
fn lab_up_serves_the_runbook_world_at_addresses_it_chose_and_lab_down_removes_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let dir_text = dir.to_str().unwrap();
    let file = fixture("cloud-2013.runbook");
    let stdout = up(&file, &dir, &["--fresh"]);
    let _guard = LabGuard(dir.clone());
    assert!(
        stdout.contains(&format!("manifest: {}", dir.join("lab.json").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "next: cutover run {} --t0 now",
            dir.join("cloud-2013.runbook").display()
        )),
        "{stdout}"
    );

    // What was chosen is recorded; the copy of the runbook names the lab's addresses.
    let manifest = read_json(&dir.join("lab.json"));
    let network = read_json(&dir.join("network.json"));
    assert_eq!(manifest["network"], network);
    let namespaced = network["mode"] == "namespaces";
    let primary = dns_address(&manifest, "primary");
    let secondary = dns_address(&manifest, "secondary");
    assert_ne!(
        primary,
        "127.0.0.83:5304".parse().unwrap(),
        "not the runbook's"
    );
    let copy = std::fs::read_to_string(dir.join("cloud-2013.runbook")).unwrap();
    assert!(copy.contains(&format!("primary {primary} key")), "{copy}");
    assert!(!copy.contains("127.0.0.83"), "{copy}");
    let wiki_new = host_addr(&manifest, "wiki-new");
    let blog = host_addr(&manifest, "blog");
    let blog_new = host_addr(&manifest, "blog-new");
    assert!(
        copy.contains(&format!(
            "dns.switch webplatform.org blog A {blog} -> {blog_new}"
        )),
        "record values follow their hosts: {copy}"
    );
    // The configuration the wiki's exec step writes names the new database's lab address.
    let db_new = host_addr(&manifest, "db-new");
    assert!(copy.contains(&format!("db_host = {db_new}")), "{copy}");

    let id = network["id"].as_str().unwrap().to_string();
    if namespaced {
        // Sites are namespaces of this lab, shaped to the runbook's 100Mbit link; the copy's
        // hosts are reached through their agents there.
        assert!(wiki_new.to_string().starts_with("10."), "{wiki_new}");
        assert!(machine_has(wiki_new), "reached through the lab's own link");
        assert_eq!(namespaces_of(&id).len(), 3, "a hub and two sites");
        for site in network["sites"].as_array().unwrap() {
            assert_eq!(site["rate_bits"], 100_000_000, "{site}");
            let qdisc = std::process::Command::new("tc")
                .args(["-n", site["namespace"].as_str().unwrap(), "qdisc", "show"])
                .output()
                .unwrap();
            let qdisc = String::from_utf8_lossy(&qdisc.stdout);
            assert!(
                qdisc.contains("tbf") && qdisc.contains("100Mbit"),
                "{qdisc}"
            );
        }
        assert!(
            copy.contains(&format!(
                "host wiki site hpcloud addr {} via agent \"",
                host_addr(&manifest, "wiki")
            )),
            "{copy}"
        );
        let agents: Vec<&str> = network["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["host"].as_str().unwrap())
            .collect();
        assert!(agents.contains(&"wiki"), "{agents:?}");
        assert!(
            !agents.contains(&"wiki-new"),
            "wiki-new runs commands, so it stays `via local`"
        );
    } else {
        assert!(wiki_new.to_string().starts_with("127."), "{wiki_new}");
        assert!(
            stdout.contains("namespaces cannot be made here"),
            "{stdout}"
        );
    }

    // The runbook was copied, its key written, its files generated.
    assert!(dir.join("keys/wpd-update.key").exists());
    assert_eq!(
        std::fs::metadata(dir.join("hosts/hpcloud/wiki/srv/uploads.img"))
            .unwrap()
            .len(),
        64 << 20
    );
    // The database servers: MariaDB at db and db-new, the source filled and written to
    // until the freeze, each login's password in the file the runbook names (made private).
    let databases = manifest["databases"].as_array().unwrap();
    assert_eq!(databases.len(), 2, "{databases:?}");
    let db = databases.iter().find(|d| d["host"] == "db").unwrap();
    assert_eq!(db["engine"], "mysql");
    assert_eq!(db["addr"], host_addr(&manifest, "db").to_string());
    assert!(
        db["seeded"][0].as_str().unwrap().starts_with("wiki ("),
        "{db}"
    );
    assert_eq!(db["writers_until"][0], "freeze-wiki");
    let data: Vec<PathBuf> = databases
        .iter()
        .map(|d| PathBuf::from(d["data"].as_str().unwrap()))
        .collect();
    assert!(data.iter().all(|d| d.join("data").is_dir()), "{data:?}");
    let secret = std::fs::metadata(dir.join("secrets/wiki-db-new.pw")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o077,
        0
    );
    let password = std::fs::read_to_string(dir.join("secrets/wiki-db.pw")).unwrap();
    assert!(
        !stdout.contains(password.trim())
            && !serde_json::to_string(&manifest)
                .unwrap()
                .contains(password.trim()),
        "the password is neither printed nor in the manifest"
    );
    let pid = manifest["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Listeners for checked ports, reached from here; the port checked closed stays closed.
    assert!(
        connects(SocketAddr::new(wiki_new, 8080)),
        "wiki-new:8080 listens"
    );
    assert!(
        connects(SocketAddr::new(host_addr(&manifest, "wiki"), 8080)),
        "the old wiki listens too (side by side)"
    );
    assert!(
        connects(SocketAddr::new(db_new, 3306)),
        "db-new's MariaDB answers at its lab address"
    );
    assert!(connects(SocketAddr::new(host_addr(&manifest, "db"), 3306)));
    assert!(connects(primary), "the primary answers on TCP");
    assert!(connects(secondary), "the secondary answers on TCP");

    let again = cutover(&["lab", "up", file.to_str().unwrap(), "--dir", dir_text]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("a lab is already running"),
        "{again:?}"
    );
    assert!(
        connects(primary),
        "a refused `up` leaves the running lab alone"
    );

    let down = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stdout).contains(&format!("stopped (process {pid})")),
        "{down:?}"
    );
    assert!(!dir.join("lab.json").exists());
    assert!(
        data.iter().all(|d| !d.exists()),
        "the servers' data is removed"
    );
    // The lab's addresses are gone from the machine (they are probed no more: outside the
    // lab's namespaces they are nobody's).
    assert!(namespaces_of(&id).is_empty(), "{:?}", namespaces_of(&id));
    if namespaced {
        assert!(!machine_has(wiki_new) && !machine_has(primary.ip()));
        // Nor do they follow the default route off the machine: the lab's
        // guard route makes them unreachable here (asked of the routing
        // table, nothing is sent).
        let route = std::process::Command::new("ip")
            .args(["-o", "route", "get", &wiki_new.to_string()])
            .output()
            .unwrap();
        assert!(
            !route.status.success()
                && String::from_utf8_lossy(&route.stderr).contains("No route to host"),
            "{route:?}"
        );
    } else {
        assert!(!connects(SocketAddr::new(wiki_new, 8080)));
        assert!(!connects(SocketAddr::new(db_new, 3306)));
        assert!(!connects(primary));
    }

    let twice = cutover(&["lab", "down", "--dir", dir_text]);
    assert!(twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stdout).contains("no lab running"));
}

#[test]
fn two_labs_of_one_runbook_run_side_by_side_and_a_taken_block_names_its_lab() {
    let temp = tempfile::tempdir().unwrap();
    let file = demo_fixture();
    let (a, b) = (temp.path().join("a"), temp.path().join("b"));
    up(&file, &a, &["--fresh"]);
    let _guard_a = LabGuard(a.clone());
    up(&file, &b, &["--fresh"]);
    let _guard_b = LabGuard(b.clone());
    let (manifest_a, manifest_b) = (
        read_json(&a.join("lab.json")),
        read_json(&b.join("lab.json")),
    );
    let (net_a, net_b) = (&manifest_a["network"], &manifest_b["network"]);
    assert_ne!(
        net_a["subnet"], net_b["subnet"],
        "each lab has its own block"
    );
    for manifest in [&manifest_a, &manifest_b] {
        assert!(connects(dns_address(manifest, "primary")));
        let wiki_new = SocketAddr::new(host_addr(manifest, "wiki-new"), 8080);
        let mut stream = TcpStream::connect_timeout(&wiki_new, Duration::from_secs(2)).unwrap();
        use std::io::{Read, Write};
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: wiki-new\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.contains(&format!(
                "served by wiki-new. (cutover lab: host wiki-new, site iphh, {wiki_new})"
            )),
            "{answer}"
        );
    }

    // A third lab asking for the first one's block is told whose it is, and builds nothing.
    let c = temp.path().join("c");
    let subnet = net_a["subnet"].as_str().unwrap();
    let taken = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        c.to_str().unwrap(),
        "--subnet",
        subnet,
    ]);
    assert_eq!(taken.status.code(), Some(2), "{taken:?}");
    let stderr = String::from_utf8_lossy(&taken.stderr);
    let a_dir = std::fs::canonicalize(&a).unwrap();
    assert!(
        stderr.contains(&format!(
            "{subnet} is taken by the lab in {}",
            a_dir.display()
        )),
        "{stderr}"
    );
    assert!(!c.join("network.json").exists());
    assert!(!c.join("lab.json").exists());
}

#[test]
fn a_failed_lab_up_leaves_nothing_built() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let file = demo_fixture();
    // Not ready in no time: `up` gives up, stops the lab process and removes its network.
    let failed = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--ready-timeout",
        "0s",
    ]);
    let _guard = LabGuard(dir.clone());
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("was not ready"),
        "{failed:?}"
    );
    let id = {
        let canonical = std::fs::canonicalize(&dir).unwrap();
        cutover_lab::network::lab_id(&canonical)
    };
    assert!(namespaces_of(&id).is_empty(), "{:?}", namespaces_of(&id));
    assert!(!dir.join("network.json").exists());
    assert!(!dir.join("lab.json").exists());
    let links = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.contains(&id))
        .collect::<Vec<_>>();
    assert!(links.is_empty(), "{links:?}");
}

#[test]
fn lab_up_fresh_starts_a_new_run_and_loopback_labs_choose_their_block() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("lab");
    let file = demo_fixture();
    let state = dir.join(".cutover/maemo-2013.db");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, b"an earlier run").unwrap();
    std::fs::write(dir.join(".cutover/maemo-2013.db-wal"), b"").unwrap();

    // Without --fresh the earlier run is kept (a resumed rehearsal)...
    let stdout = up(&file, &dir, &["--loopback"]);
    assert!(state.exists());
    assert!(stdout.contains("network   loopback, 127."), "{stdout}");
    let manifest = read_json(&dir.join("lab.json"));
    let primary = dns_address(&manifest, "primary");
    assert!(primary.ip().is_loopback() && primary.ip().to_string() != "127.0.0.53");
    assert!(connects(primary));
    assert!(
        cutover(&["lab", "down", "--dir", dir.to_str().unwrap()])
            .status
            .success()
    );
    assert!(!connects(primary));

    // ...with it, the next `cutover run` is a new run; the lab takes the same block again.
    up(&file, &dir, &["--loopback", "--fresh"]);
    let _guard = LabGuard(dir.clone());
    assert!(!state.exists());
    assert!(!dir.join(".cutover/maemo-2013.db-wal").exists());
    let again = read_json(&dir.join("lab.json"));
    assert_eq!(dns_address(&again, "primary"), primary);
}

#[test]
fn lab_up_refuses_a_runbook_that_is_not_on_loopback() {
    let temp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(demo_fixture())
        .unwrap()
        .replace("127.0.0.54:5301", "192.0.2.54:53");
    let file = temp.path().join("public.runbook");
    std::fs::write(&file, text).unwrap();
    let dir = temp.path().join("lab");
    let up = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(
        stderr.contains("192.0.2.54:53 is not a loopback address"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing was built");
}

#[test]
fn lab_up_reports_runbook_errors_with_exit_code_1() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("broken.runbook");
    std::fs::write(&file, "runbook broken\n\nstep a after nowhere\n  wait 1s\n").unwrap();
    let up = cutover(&[
        "lab",
        "up",
        file.to_str().unwrap(),
        "--dir",
        temp.path().join("lab").to_str().unwrap(),
    ]);
    assert_eq!(up.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&up.stderr).contains("nowhere"));
}
