//! The container deployment files in `deploy/`: the Kubernetes manifests
//! pass `kubernetes-validate --strict` (the API's own schemas, from PyPI),
//! and every Courier container of the manifests and of the compose file is
//! given settings that `courier config check` accepts for its role: the
//! variable names, the values and the secrets' lengths are what the
//! process would check at start.
//!
//! What is not checked here: building the image and starting the compose
//! file or the manifests, for want of a container engine and a cluster on
//! the machine the tests run on (deploy/container/README.md says so).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// `kubernetes-validate`: where scripts/test.sh installed it, or the PATH.
fn kubernetes_validate() -> PathBuf {
    std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubernetes-validate"))
}

/// Every YAML document of `file`, as JSON, read by the Python that runs
/// `kubernetes-validate` (it brings PyYAML).
fn yaml_documents(file: &Path) -> Vec<Value> {
    let tool = kubernetes_validate();
    let python = tool
        .parent()
        .map(|bin| bin.join("python3"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run ({e})", python.display()));
    assert!(
        out.status.success(),
        "reading {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `courier config check` for `role` with exactly `env` as the
/// COURIER_* environment; panics with its answer unless it passes.
fn check_settings(what: &str, role: &str, env: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["config", "check"])
        .arg(&empty)
        .args(["--role", role])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "0")
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} ({role}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `$(NAME)` references of a container's env resolved as the kubelet does.
fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = value.to_owned();
    for (name, v) in vars {
        out = out.replace(&format!("$({name})"), v);
    }
    out
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let tool = kubernetes_validate();
    for file in ["config.yaml", "logic.yaml", "comet.yaml", "job.yaml"] {
        let path = deploy(&format!("kubernetes/{file}"));
        let out = Command::new(&tool)
            .arg("--strict")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} cannot run ({e}): scripts/test.sh installs it from PyPI",
                    tool.display()
                )
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("ERROR"),
            "{file}:\n{text}"
        );
        assert!(text.contains("passed"), "{file} validated nothing:\n{text}");
    }
}

#[test]
fn every_kubernetes_container_gets_settings_its_role_accepts() {
    let mut shared = BTreeMap::new();
    for doc in yaml_documents(&deploy("kubernetes/config.yaml")) {
        let data = doc.get("data").or_else(|| doc.get("stringData")).unwrap();
        for (k, v) in data.as_object().unwrap() {
            shared.insert(k.clone(), v.as_str().unwrap().to_owned());
        }
    }
    assert!(shared.contains_key("COURIER_AUTH__JWT_SECRET"));
    let mut checked = Vec::new();
    for file in ["logic.yaml", "comet.yaml", "job.yaml"] {
        for doc in yaml_documents(&deploy(&format!("kubernetes/{file}"))) {
            if !matches!(doc["kind"].as_str(), Some("Deployment" | "StatefulSet")) {
                continue;
            }
            let name = doc["metadata"]["name"].as_str().unwrap();
            for container in doc["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
            {
                let role = container["args"][0].as_str().unwrap();
                // What the kubelet would set, for the pod `<name>-0`.
                let mut vars = BTreeMap::from([
                    ("POD_NAME".to_owned(), format!("{name}-0")),
                    ("POD_IP".to_owned(), "10.0.0.7".to_owned()),
                ]);
                let mut env = shared.clone();
                for e in container["env"].as_array().unwrap() {
                    let key = e["name"].as_str().unwrap().to_owned();
                    if let Some(value) = e["value"].as_str() {
                        let value = expand(value, &vars);
                        vars.insert(key.clone(), value.clone());
                        env.insert(key, value);
                    }
                }
                env.retain(|k, _| k.starts_with("COURIER_"));
                check_settings(&format!("{file} {name}"), role, &env);
                checked.push(role.to_owned());
            }
        }
    }
    checked.sort();
    assert_eq!(checked, ["comet", "job", "logic"]);
}

#[test]
fn every_compose_service_of_courier_gets_settings_its_role_accepts() {
    let compose = yaml_documents(&deploy("container/compose.yaml")).remove(0);
    let mut checked = Vec::new();
    for (name, service) in compose["services"].as_object().unwrap() {
        if !service["image"].as_str().unwrap().contains("courier") {
            continue;
        }
        let role = service["command"][0].as_str().unwrap();
        let env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        check_settings(&format!("compose {name}"), role, &env);
        checked.push(name.clone());
    }
    assert_eq!(checked, ["comet-1", "comet-2", "job-1", "job-2", "logic"]);
}
