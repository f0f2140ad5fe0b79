//! The Kubernetes example against officeswitch's settings and the API schemas.

use super::docker::dockerfile_uid;
use super::*;

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// The Kubernetes example: the kustomization's resources and the example Secret.
pub(super) struct Manifests {
    /// (file, document) for every document.
    docs: Vec<(String, Yaml)>,
    /// Files kustomization.yaml lists.
    resources: Vec<String>,
}

impl Manifests {
    pub(super) fn load() -> Manifests {
        let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
        let resources: Vec<String> = kustomization["resources"]
            .as_sequence()
            .expect("kustomization.yaml lists resources")
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        let mut docs = Vec::new();
        for file in resources
            .iter()
            .map(String::as_str)
            .chain(["secret.example.yaml"])
        {
            let text = read(&format!("deploy/kubernetes/{file}"));
            for doc in yaml_serde::Deserializer::from_str(&text) {
                let value = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
                if !value.is_null() {
                    docs.push((file.to_string(), value));
                }
            }
        }
        Manifests { docs, resources }
    }

    pub(super) fn find(&self, kind: &str, name: &str) -> &Yaml {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
    }

    pub(super) fn deployment(&self) -> &Yaml {
        self.find("Deployment", "officeswitch")
    }

    pub(super) fn pod(&self) -> &Yaml {
        &self.deployment()["spec"]["template"]
    }

    pub(super) fn container(&self) -> &Yaml {
        self.pod()["spec"]["containers"]
            .as_sequence()
            .and_then(|c| c.iter().find(|c| c["name"] == "officeswitch"))
            .expect("a container named officeswitch")
    }

    /// The container port named `name`.
    pub(super) fn container_port(&self, name: &str) -> Option<u16> {
        self.container()["ports"]
            .as_sequence()?
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
    }

    /// A probe's or Service's `port` (a number or a port name) as a number.
    pub(super) fn resolve_port(&self, port: &Yaml) -> Option<u16> {
        match port.as_str() {
            Some(name) => self.container_port(name),
            None => port.as_u64().and_then(|p| u16::try_from(p).ok()),
        }
    }

    /// The `--config` path the container runs with.
    pub(super) fn config_path(&self) -> PathBuf {
        let args: Vec<&str> = self.container()["args"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        let at = args
            .iter()
            .position(|a| *a == "--config")
            .expect("the container passes --config");
        PathBuf::from(args.get(at + 1).expect("a path after --config"))
    }

    /// The volume mounted exactly at `dir`, with its mount.
    pub(super) fn volume_at(&self, dir: &Path) -> Option<(&Yaml, &Yaml)> {
        let mount = self.container()["volumeMounts"]
            .as_sequence()?
            .iter()
            .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))?;
        let volume = self.pod()["spec"]["volumes"]
            .as_sequence()?
            .iter()
            .find(|v| v["name"] == mount["name"])?;
        Some((mount, volume))
    }

    /// The file `path` as a volume provides it: (volume, key in its ConfigMap or Secret).
    pub(super) fn file_source(&self, path: &Path) -> Option<(&Yaml, String)> {
        let dir = path.parent()?;
        let file = path.file_name()?.to_str()?;
        let (_, volume) = self.volume_at(dir)?;
        let source = if volume["secret"].is_null() {
            &volume["configMap"]
        } else {
            &volume["secret"]
        };
        let key = match source["items"].as_sequence() {
            Some(items) => items.iter().find(|i| i["path"] == file)?["key"]
                .as_str()?
                .to_string(),
            None => file.to_string(),
        };
        Some((volume, key))
    }

    /// The text of `key` in the ConfigMap or Secret `name`, if both exist.
    pub(super) fn data(&self, kind: &str, name: &str, key: &str) -> Option<String> {
        let object = self
            .docs
            .iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)?;
        ["data", "stringData"]
            .iter()
            .find_map(|field| object[*field][key].as_str().map(String::from))
    }

    /// officeswitch.toml as the ConfigMap gives it to the container.
    pub(super) fn config_text(&self) -> String {
        let path = self.config_path();
        let (volume, key) = self
            .file_source(&path)
            .unwrap_or_else(|| panic!("{} is not mounted from a volume", path.display()));
        let name = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{} does not come from a ConfigMap", path.display()));
        self.data("ConfigMap", name, &key)
            .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
    }

    pub(super) fn config(&self) -> Config {
        Config::from_str(&self.config_path(), &self.config_text())
            .unwrap_or_else(|e| panic!("the ConfigMap's officeswitch.toml: {e}"))
    }

    /// Each probe's path and the status a ready officeswitch answers it with.
    pub(super) fn probe_paths(&self) -> Vec<(String, StatusCode)> {
        ["readinessProbe", "livenessProbe"]
            .iter()
            .filter_map(|p| self.container()[*p]["httpGet"]["path"].as_str())
            .map(|p| (p.to_string(), StatusCode::OK))
            .collect()
    }
}

/// Seconds the preStop hook sleeps (`exec: sleep N` or the `sleep` action).
fn pre_stop_seconds(container: &Yaml) -> u64 {
    let hook = &container["lifecycle"]["preStop"];
    if let Some(seconds) = hook["sleep"]["seconds"].as_u64() {
        return seconds;
    }
    let command: Vec<&str> = hook["exec"]["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    match command.as_slice() {
        [sleep, n] if sleep.ends_with("sleep") => n.parse().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn kubernetes_example_agrees_with_officeswitch_settings() {
    let m = Manifests::load();
    let mut problems = Vec::new();
    for (file, doc) in &m.docs {
        for field in [&doc["apiVersion"], &doc["kind"], &doc["metadata"]["name"]] {
            if field.as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "{file}: a document without apiVersion, kind or metadata.name"
                ));
            }
        }
    }
    if m.resources.iter().any(|r| r.contains("secret")) {
        problems
            .push("kustomization.yaml applies a Secret: key material is never committed".into());
    }
    let deployment = m.deployment();
    let pod = m.pod();
    let container = m.container();
    let config = m.config();

    // Several replicas, agreeing through a shared pin store that the example provides.
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    if replicas < 2 {
        problems.push(format!(
            "replicas: {replicas}; a load-balanced example runs 2 or more"
        ));
    }
    match &config.pins.store {
        PinStoreConfig::Redis(url) => {
            let url = url::Url::parse(url).expect("valid Redis URL");
            let host = url.host_str().unwrap_or_default();
            let service = host.split('.').next().unwrap_or_default();
            let port = url.port().unwrap_or(6379);
            let found = m.docs.iter().any(|(_, d)| {
                d["kind"] == "Service"
                    && d["metadata"]["name"] == service
                    && d["spec"]["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|p| p["port"].as_u64() == Some(u64::from(port)))
            });
            if !found {
                problems.push(format!(
                    "[pins] store names {host}:{port}, which no Service provides"
                ));
            }
        }
        PinStoreConfig::Memory if replicas > 1 => {
            problems.push("replicas share no pin store: [pins] store must be Redis".into());
        }
        PinStoreConfig::Memory => {}
    }

    // Labels tie the Deployment, Service and PodDisruptionBudget to the pods.
    let pod_labels = pod["metadata"]["labels"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    let selects_pods = |selector: &Yaml| {
        selector
            .as_mapping()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    for (what, selector) in [
        ("Deployment", &deployment["spec"]["selector"]["matchLabels"]),
        (
            "Service",
            &m.find("Service", "officeswitch")["spec"]["selector"],
        ),
        (
            "PodDisruptionBudget",
            &m.find("PodDisruptionBudget", "officeswitch")["spec"]["selector"]["matchLabels"],
        ),
    ] {
        if !selects_pods(selector) {
            problems.push(format!(
                "the {what}'s selector does not select the officeswitch pods"
            ));
        }
    }

    // Ports: the container's, the probes' and the Service's are the ones officeswitch listens on.
    let listen = config.listen.expect("plain listener").port();
    if m.container_port("http") != Some(listen) {
        problems.push(format!("container port `http` is not {listen} (listen)"));
    }
    if let Some(admin) = &config.admin
        && m.container_port("admin") != Some(admin.listen.port())
    {
        problems.push(format!(
            "container port `admin` is not {} ([admin] listen)",
            admin.listen.port()
        ));
    }
    for port in m.find("Service", "officeswitch")["spec"]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        if m.resolve_port(&port["targetPort"]) != Some(listen) {
            problems.push(format!(
                "Service targetPort {:?} is not {listen}",
                port["targetPort"]
            ));
        }
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        if get["path"] != path {
            problems.push(format!(
                "{probe} asks {:?}, officeswitch answers it on {path}",
                get["path"]
            ));
        }
        if m.resolve_port(&get["port"]) != Some(listen) {
            problems.push(format!("{probe} port {:?} is not {listen}", get["port"]));
        }
    }

    // Draining: the probe sees /readyz fail before the listeners close, and the kubelet
    // waits for the preStop sleep plus the whole drain.
    let readiness = &container["readinessProbe"];
    let noticed = readiness["periodSeconds"].as_u64().unwrap_or(10)
        * readiness["failureThreshold"].as_u64().unwrap_or(3);
    if Duration::from_secs(noticed) > config.drain.delay {
        problems.push(format!(
            "the readiness probe needs {noticed} s to see /readyz fail, [drain] delay_secs closes the listeners after {:?}",
            config.drain.delay
        ));
    }
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let pre_stop = pre_stop_seconds(container);
    if pre_stop == 0 {
        problems.push(
            "no preStop sleep: the endpoint removal must reach the load balancers first".into(),
        );
    }
    if Duration::from_secs(grace) <= Duration::from_secs(pre_stop) + config.drain.deadline {
        problems.push(format!(
            "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} s + [drain] deadline {:?}",
            config.drain.deadline
        ));
    }

    // Files: rules from a ConfigMap that officeswitch's own loader accepts, keys from a
    // Secret that has them, state on a writable volume.
    match m.volume_at(&config.rules_dir) {
        Some((_, volume)) if !volume["configMap"].is_null() => {
            let name = volume["configMap"]["name"].as_str().unwrap_or_default();
            let dir = tempfile::tempdir().expect("temp dir");
            for (key, text) in m.find("ConfigMap", name)["data"]
                .as_mapping()
                .into_iter()
                .flatten()
            {
                let (Some(key), Some(text)) = (key.as_str(), text.as_str()) else {
                    continue;
                };
                std::fs::write(dir.path().join(key), text).expect("write rule file");
            }
            if let Err(e) = RuleSet::load(dir.path(), &config.pools) {
                problems.push(format!("ConfigMap {name} (rules): {e}"));
            }
        }
        _ => problems.push(format!(
            "rules_dir {} is not a mounted ConfigMap",
            config.rules_dir.display()
        )),
    }
    let mut key_files = vec![
        config.keys.proof_key.clone(),
        config.keys.token_secret.clone(),
    ];
    key_files.extend(config.keys.old_proof_key.clone());
    key_files.extend(config.keys.old_token_secret.clone());
    key_files.extend(config.admin.as_ref().map(|a| a.token_file.clone()));
    for path in key_files {
        let secret = m
            .file_source(&path)
            .and_then(|(volume, key)| Some((volume["secret"]["secretName"].as_str()?, key)));
        match secret {
            Some((name, key)) if m.data("Secret", name, &key).is_some() => {}
            Some((name, key)) => problems.push(format!(
                "{}: Secret {name} has no key {key}",
                path.display()
            )),
            None => problems.push(format!("{} is not mounted from a Secret", path.display())),
        }
    }
    if config.keys.generate_missing {
        problems.push("[keys] generate_missing: every replica would make its own key".into());
    }
    match m.volume_at(&config.state_dir) {
        Some((mount, volume))
            if mount["readOnly"] != true
                && (!volume["emptyDir"].is_null()
                    || !volume["persistentVolumeClaim"].is_null()) => {}
        _ => problems.push(format!(
            "state_dir {} is not a writable volume",
            config.state_dir.display()
        )),
    }

    // Security: the image's non-root user, a read-only root file system, nothing to escalate.
    let security = |key: &str| {
        let own = &container["securityContext"][key];
        if own.is_null() {
            pod["spec"]["securityContext"][key].clone()
        } else {
            own.clone()
        }
    };
    if security("runAsNonRoot") != true {
        problems.push("runAsNonRoot is not true".into());
    }
    if security("runAsUser").as_u64() != Some(dockerfile_uid()) {
        problems.push(format!(
            "runAsUser is not the image's user {}",
            dockerfile_uid()
        ));
    }
    for (key, expected) in [
        ("readOnlyRootFilesystem", true),
        ("allowPrivilegeEscalation", false),
    ] {
        if container["securityContext"][key] != expected {
            problems.push(format!("container securityContext.{key} is not {expected}"));
        }
    }
    if container["securityContext"]["capabilities"]["drop"][0] != "ALL" {
        problems.push("container capabilities do not drop ALL".into());
    }
    let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
    let image = container["image"].as_str().unwrap_or_default();
    let renamed = kustomization["images"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|i| i["name"] == image);
    if !renamed {
        problems.push(format!(
            "image {image:?} is not set in kustomization.yaml's images"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn kubernetes_example_validates_against_the_api_schemas() {
    let dir = repo("deploy/kubernetes");
    // The applied objects are what kustomize renders; without kubectl, the files themselves.
    let rendered = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    let mut files = vec![
        rendered.path().to_path_buf(),
        dir.join("secret.example.yaml"),
    ];
    match run_tool(
        "kubectl",
        &["kustomize", "."],
        &dir,
        Duration::from_secs(60),
    ) {
        Some(out) => {
            assert!(out.success, "kubectl kustomize:\n{}", out.text);
            std::fs::write(rendered.path(), &out.stdout).expect("write rendered manifests");
            let kinds = out.stdout.matches("\nkind: ").count()
                + usize::from(out.stdout.starts_with("kind: "));
            assert!(
                kinds >= Manifests::load().docs.len() - 1,
                "kustomize rendered {kinds} objects:\n{}",
                out.stdout
            );
        }
        None => {
            skipped(
                "kubectl kustomize",
                "kubectl not installed; validating the files one by one",
            );
            files = Manifests::load()
                .resources
                .iter()
                .map(|r| dir.join(r))
                .chain([dir.join("secret.example.yaml")])
                .collect();
        }
    }
    let args: Vec<String> = ["--strict", "--quiet", "-k", "1.30.0"]
        .map(String::from)
        .into_iter()
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(out) = run_tool("kubernetes-validate", &args, &dir, Duration::from_secs(120)) else {
        skipped(
            "kubernetes-validate",
            "not installed (pip install kubernetes-validate==1.37.0)",
        );
        return;
    };
    assert!(out.success, "kubernetes-validate:\n{}", out.text);
    // And it does reject a wrong manifest, so a pass means something.
    let broken = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(
        broken.path(),
        read("deploy/kubernetes/deployment.yaml")
            .replace("containerPort: 8080", "containerPort: http"),
    )
    .expect("write broken manifest");
    let out = run_tool(
        "kubernetes-validate",
        &[
            "--strict",
            "--quiet",
            "-k",
            "1.30.0",
            &broken.path().display().to_string(),
        ],
        &dir,
        Duration::from_secs(60),
    )
    .expect("kubernetes-validate ran a moment ago");
    assert!(
        !out.success,
        "kubernetes-validate accepted a string containerPort:\n{}",
        out.text
    );
}
