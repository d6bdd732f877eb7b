//! The systemd units and the sysctl file in `deploy/systemd/`: every unit
//! passes the real `systemd-analyze verify` without a word, a broken unit
//! does not, and the numbers they carry (file descriptors, stop timeout,
//! accept backlog) agree with the README's tuning table and with the code.
//!
//! No cluster: `systemd-analyze verify` works offline, with or without
//! systemd as PID 1. It checks that `ExecStart`'s binary exists, so each
//! unit is verified as a temporary copy whose `ExecStart` names the binary
//! just built; the files in `deploy/` keep `/usr/local/bin/courier`.
//! `User=courier` need not exist for `verify` (it does not look users up).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the units name the binary, as installed (deploy/systemd/README.md).
const INSTALLED_BINARY: &str = "/usr/local/bin/courier";

/// Every unit shipped, by file name, with the role its `ExecStart` runs and
/// the config file it reads.
const UNITS: [(&str, &str, &str); 4] = [
    ("courier-comet.service", "comet", "/etc/courier/comet.toml"),
    (
        "courier-comet@.service",
        "comet",
        "/etc/courier/comet-%i.toml",
    ),
    ("courier-logic.service", "logic", "/etc/courier/logic.toml"),
    ("courier-job.service", "job", "/etc/courier/job.toml"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_dir() -> PathBuf {
    repo().join("deploy/systemd")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `systemd-analyze` from the PATH. Missing is a failure, not a skip:
/// scripts/test.sh installs it (Debian package `systemd`).
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze is not on the PATH: this test needs it \
                 (Debian package `systemd`; scripts/test.sh installs it)"
            )
        })
}

/// A unit's `Key=value` settings, in order, comments and section headers
/// left out (a key may repeat, e.g. `SystemCallFilter=`).
fn settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not Key=value: {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// The only value of `key` in `unit`.
fn setting(unit: &str, key: &str) -> String {
    let values: Vec<String> = settings(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{key}= set {} times", values.len());
    values.into_iter().next().unwrap()
}

/// `unit` with its `ExecStart` pointing at `binary` instead of the
/// installed path.
fn pointed_at(unit: &str, binary: &Path) -> String {
    let from = format!("ExecStart={INSTALLED_BINARY} ");
    assert_eq!(
        unit.lines().filter(|l| l.starts_with(&from)).count(),
        1,
        "the unit has exactly one `{from}…` line"
    );
    // Quoted: systemd takes a quoted first word as the path, spaces and all.
    unit.replace(&from, &format!("ExecStart=\"{}\" ", binary.display()))
}

/// Runs `systemd-analyze verify` on `text` saved as `dir/name` and returns
/// what it printed (stdout then stderr) and whether it exited 0.
fn verify(dir: &Path, name: &str, text: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("running systemd-analyze verify");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// A unit as it would be installed, with only `ExecStart`'s binary swapped
/// for the one cargo built.
fn installable(name: &str) -> String {
    pointed_at(
        &read(&deploy_dir().join(name)),
        Path::new(env!("CARGO_BIN_EXE_courier")),
    )
}

#[test]
fn every_unit_passes_systemd_analyze_verify_silently() {
    let shipped: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service"))
        .collect();
    let mut expected: Vec<&str> = UNITS.iter().map(|(n, _, _)| *n).collect();
    let mut found: Vec<&str> = shipped.iter().map(String::as_str).collect();
    expected.sort_unstable();
    found.sort_unstable();
    assert_eq!(
        found, expected,
        "the units in deploy/systemd/ and UNITS here"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (name, _, _) in UNITS {
        // `verify` exits 0 on a mistyped key or a bad value and only says
        // so: anything printed is a failure.
        let (ok, printed) = verify(dir.path(), name, &installable(name));
        if !ok || !printed.trim().is_empty() {
            failures.push(format!("{name} (exit ok: {ok}):\n{printed}"));
        }
    }
    assert!(
        failures.is_empty(),
        "systemd-analyze verify reported problems:\n\n{}",
        failures.join("\n")
    );
}

/// The check above would catch a broken unit: the tool runs and speaks.
#[test]
fn a_broken_unit_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let good = installable("courier-comet.service");

    let typo = good.replace("\nRestart=on-failure", "\nRestrat=on-failure");
    assert_ne!(typo, good);
    let (_, printed) = verify(dir.path(), "courier-comet.service", &typo);
    assert!(
        printed.contains("Restrat"),
        "a mistyped key is reported; systemd-analyze printed:\n{printed}"
    );

    let bad_time = good.replace("TimeoutStopSec=90s", "TimeoutStopSec=ninety");
    assert_ne!(bad_time, good);
    let (_, printed) = verify(dir.path(), "courier-comet.service", &bad_time);
    assert!(
        printed.contains("ninety"),
        "an unparsable value is reported; systemd-analyze printed:\n{printed}"
    );

    // As installed, on a machine without /usr/local/bin/courier (or with
    // it, then pointed elsewhere): a missing binary is an error exit.
    let missing = pointed_at(
        &read(&deploy_dir().join("courier-job.service")),
        &dir.path().join("no-such-courier"),
    );
    let (ok, printed) = verify(dir.path(), "courier-job.service", &missing);
    assert!(
        !ok && printed.contains("no-such-courier"),
        "a missing binary fails verify (exit ok: {ok}); printed:\n{printed}"
    );
}

#[test]
fn units_run_their_role_as_the_courier_user_and_drain_on_sigterm() {
    for (name, role, config) in UNITS {
        let unit = read(&deploy_dir().join(name));
        assert_eq!(
            setting(&unit, "ExecStart"),
            format!("{INSTALLED_BINARY} {role} --config {config}"),
            "{name}"
        );
        assert_eq!(setting(&unit, "Type"), "simple", "{name}");
        assert_eq!(setting(&unit, "User"), "courier", "{name}");
        assert_eq!(setting(&unit, "Group"), "courier", "{name}");
        assert_eq!(setting(&unit, "KillSignal"), "SIGTERM", "{name}");
        assert_eq!(setting(&unit, "Restart"), "on-failure", "{name}");
        assert_eq!(
            setting(&unit, "EnvironmentFile"),
            "-/etc/courier/courier.env",
            "{name}"
        );
        assert_eq!(setting(&unit, "After"), "network-online.target", "{name}");
        assert_eq!(setting(&unit, "Wants"), "network-online.target", "{name}");
        assert_eq!(setting(&unit, "ProtectSystem"), "strict", "{name}");
        assert_eq!(setting(&unit, "NoNewPrivileges"), "yes", "{name}");
    }
}

/// `90s`, `2min`, `1min 30s`: the subset of systemd's time spans the units use.
fn timespan(value: &str) -> Duration {
    value
        .split_whitespace()
        .map(|part| {
            let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let n: u64 = digits
                .parse()
                .unwrap_or_else(|_| panic!("time span {value:?}"));
            match &part[digits.len()..] {
                "" | "s" => Duration::from_secs(n),
                "min" => Duration::from_secs(60 * n),
                unit => panic!("time unit {unit:?} in {value:?}"),
            }
        })
        .sum()
}

#[test]
fn a_comet_stop_outlasts_its_drain() {
    let grace = courier_comet::CometConfig::default().drain_grace;
    for name in ["courier-comet.service", "courier-comet@.service"] {
        let stop = timespan(&setting(&read(&deploy_dir().join(name)), "TimeoutStopSec"));
        assert!(
            stop >= grace + Duration::from_secs(15),
            "{name}: TimeoutStopSec {stop:?} leaves no margin over drain_grace {grace:?}"
        );
    }
    // Logic drains requests for 10 s, job pushes for push_timeout (5 s).
    let push_timeout = courier_job::JobConfig::default().push_timeout;
    for name in ["courier-logic.service", "courier-job.service"] {
        let stop = timespan(&setting(&read(&deploy_dir().join(name)), "TimeoutStopSec"));
        assert!(
            stop >= Duration::from_secs(20) && stop >= push_timeout * 2,
            "{name}: {stop:?}"
        );
    }
}

/// The value column of the README's tuning-table row containing `needle`,
/// as a number: "| `net.core.somaxconn`, … | `65535` | why |" gives 65535.
fn readme_number(needle: &str) -> u64 {
    let readme = read(&repo().join("README.md"));
    let row = readme
        .lines()
        .find(|l| l.starts_with('|') && l.contains(needle))
        .unwrap_or_else(|| panic!("README.md: no table row with {needle:?}"));
    let value = row.split('|').nth(2).unwrap().trim().trim_matches('`');
    value
        .parse()
        .unwrap_or_else(|_| panic!("README.md row {row:?}: value {value:?} is not a number"))
}

fn limit_nofile(name: &str) -> u64 {
    setting(&read(&deploy_dir().join(name)), "LimitNOFILE")
        .parse()
        .unwrap()
}

#[test]
fn file_descriptor_limits_match_the_readme() {
    let readme = readme_number("`LimitNOFILE`");
    assert_eq!(limit_nofile("courier-comet.service"), readme);
    assert_eq!(limit_nofile("courier-comet@.service"), readme);
    // Logic holds up to max_connections HTTP clients plus its backends.
    let logic = courier_logic::LogicConfig::default().max_connections as u64;
    assert!(limit_nofile("courier-logic.service") >= 2 * logic);
    assert!(limit_nofile("courier-job.service") >= 4096);
}

/// The active `key = value` lines of the sysctl file.
fn sysctl_settings() -> BTreeMap<String, String> {
    let text = read(&deploy_dir().join("99-courier.conf"));
    let mut found = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("99-courier.conf: not `key = value`: {line:?}"));
        let previous = found.insert(key.trim().to_owned(), value.trim().to_owned());
        assert!(previous.is_none(), "99-courier.conf sets {key} twice");
    }
    found
}

#[test]
fn the_sysctl_file_sets_real_keys_to_the_readme_values() {
    let sysctl = sysctl_settings();
    let number = |key: &str| -> u64 {
        let value = sysctl
            .get(key)
            .unwrap_or_else(|| panic!("99-courier.conf does not set {key}"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{key} = {value:?} is not a number"))
    };

    // Every key is one the kernel has (what `sysctl -p` would write to).
    for key in sysctl.keys() {
        let proc = Path::new("/proc/sys").join(key.replace('.', "/"));
        assert!(
            proc.exists(),
            "99-courier.conf: {key} is no kernel setting ({} missing)",
            proc.display()
        );
    }

    let fds = limit_nofile("courier-comet.service");
    assert!(
        number("fs.nr_open") >= fds,
        "fs.nr_open below comet's LimitNOFILE"
    );
    assert!(
        number("fs.file-max") >= fds,
        "fs.file-max below comet's LimitNOFILE"
    );

    let backlog = readme_number("`net.core.somaxconn`");
    assert_eq!(u64::from(courier_runtime::net::LISTEN_BACKLOG), backlog);
    assert_eq!(number("net.core.somaxconn"), backlog);
    assert_eq!(number("net.ipv4.tcp_max_syn_backlog"), backlog);

    // For load generators, not comets: documented, never active.
    assert!(!sysctl.contains_key("net.ipv4.ip_local_port_range"));
    assert_eq!(sysctl.len(), 4, "unexpected settings: {sysctl:?}");

    // procps' own reading of the file, where it is installed: it fails on a
    // key the kernel lacks, without writing anything.
    // The /proc/sys check above is the same test, so a machine without
    // procps loses nothing but this second opinion.
    match Command::new("sysctl")
        .args(["--dry-run", "-p"])
        .arg(deploy_dir().join("99-courier.conf"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty(),
            "sysctl --dry-run -p: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("sysctl (procps) not run: {e}"),
    }
}
