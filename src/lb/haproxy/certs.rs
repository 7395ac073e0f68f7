//! TLS certificates in HAProxy: the crt-list podgate manages and the certificates in
//! it, changed at run time through the runtime API's certificate commands.
//!
//! Owns: the certificate files `<config_dir>/certs/<name>.pem` (chain and key, named by
//! `Names::cert`: owner tag and a hash of the id, never the id itself), the crt-list
//! `<config_dir>/certificates.list` (one line per certificate that a host names in the
//! route table, `VirtualHost.tls`, with those hosts as SNI filters), and the commands
//! between what the worker holds and what podgate wants: `new ssl cert`, `set ssl cert`
//! and `commit ssl cert` (also for a changed certificate: HAProxy swaps it live, in
//! every crt-list line that uses it), `add ssl crt-list` / `del ssl crt-list` (a
//! changed line is added before the old one goes, so a host never lacks its
//! certificate in between), `del ssl cert`. The files are written too, so that a
//! reload or a restart starts with the same certificates.
//!
//! Must never reload HAProxy for a certificate, log key material, touch a certificate
//! or crt-list line it did not name, or send a PEM that could end a CLI payload early
//! (blank lines are dropped; the PEM was parsed first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::adapter::{HaproxyAdapter, transient};
use super::names::Names;
use super::runtime::{RuntimeError, escape_arg};
use crate::lb::LbError;
use podgate_core::model::{Batch, Certificate, RouteTable};

/// The crt-list file in the config directory.
pub(crate) const CRT_LIST: &str = "certificates.list";
const CERT_DIR: &str = "certs";

/// The largest chain and key podgate sends in one `set ssl cert`: a command and its
/// payload must fit one HAProxy buffer (`tune.bufsize`, 16 kB by default).
const MAX_BUNDLE: usize = 15 * 1024;

pub(crate) fn crt_list_path(dir: &Path) -> PathBuf {
    dir.join(CRT_LIST)
}

/// Where the certificate `id` lives on disk, which is also its name in HAProxy.
pub(crate) fn cert_path(names: &Names, dir: &Path, id: &str) -> String {
    dir.join(CERT_DIR)
        .join(format!("{}.pem", names.cert(id)))
        .to_string_lossy()
        .into_owned()
}

/// The stem of one of this owner's certificate files (`pg_crt_<hash>`), else `None`.
pub(crate) fn own_stem<'a>(names: &Names, dir: &Path, file: &'a str) -> Option<&'a str> {
    let certs = dir.join(CERT_DIR);
    let rest = file.strip_prefix(certs.to_str()?)?.strip_prefix('/')?;
    let stem = rest.strip_suffix(".pem")?;
    names.is_cert(stem).then_some(stem)
}

/// The chain and key of a certificate as one PEM bundle for HAProxy, after checking
/// that it is usable (`tls_check`), without blank lines (a blank line ends a CLI
/// payload), small enough for one command.
pub(crate) fn bundle(cert: &Certificate) -> Result<String, LbError> {
    crate::lb::tls_check::check(cert)?;
    let bad = |reason: &str| LbError::Rejected(format!("certificate {}: {reason}", cert.id));
    let mut out = String::new();
    for line in cert.cert_pem.0.lines().chain(cert.key_pem.0.lines()) {
        let line = line.trim_end();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.len() > MAX_BUNDLE {
        return Err(bad(&format!(
            "chain and key are {} bytes, more than the {MAX_BUNDLE} one runtime API \
             command can carry",
            out.len()
        )));
    }
    Ok(out)
}

/// The SHA-1 fingerprint of the leaf, as `show ssl cert <file>` prints it.
fn fingerprint(cert: &Certificate) -> Option<String> {
    use std::fmt::Write as _;
    let leaf = CertificateDer::pem_slice_iter(cert.cert_pem.0.as_bytes())
        .next()?
        .ok()?;
    let d = digest(&SHA1_FOR_LEGACY_USE_ONLY, leaf.as_ref());
    Some(d.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    }))
}

/// The certificates held after `batch`: removals, then upserts (each checked).
pub(crate) fn next_certificates(
    held: &BTreeMap<String, Certificate>,
    batch: &Batch,
) -> Result<BTreeMap<String, Certificate>, LbError> {
    let mut certs = held.clone();
    for id in &batch.remove_certificates {
        certs.remove(id);
    }
    for c in &batch.upsert_certificates {
        bundle(c)?;
        certs.insert(c.id.clone(), c.clone());
    }
    Ok(certs)
}

/// Whether a host pattern can be an SNI filter as is (HostPattern guarantees it; this is
/// the last line of defence before a crt-list line).
fn plain_filter(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*".contains(&b))
}

/// The crt-list podgate wants: certificate file → the hosts that name it (sorted). A
/// held certificate that no host names has no line: HAProxy keeps it, unused.
pub(crate) fn crt_lines(
    names: &Names,
    dir: &Path,
    routes: &RouteTable,
    certs: &BTreeMap<String, Certificate>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, vhost) in &routes.hosts {
        let Some(id) = vhost.tls.as_deref().filter(|id| certs.contains_key(*id)) else {
            continue;
        };
        if plain_filter(host.as_str()) {
            out.entry(cert_path(names, dir, id))
                .or_default()
                .push(host.as_str().to_owned());
        }
    }
    for filters in out.values_mut() {
        filters.sort();
    }
    out
}

fn render_crt_list(lines: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    for (file, filters) in lines {
        out.push_str(file);
        for f in filters {
            out.push(' ');
            out.push_str(f);
        }
        out.push('\n');
    }
    out
}

/// Writes the crt-list file, unless `only_if_missing` and it exists.
pub(crate) fn write_crt_list(
    dir: &Path,
    lines: &BTreeMap<String, Vec<String>>,
    only_if_missing: bool,
) -> std::io::Result<()> {
    let path = crt_list_path(dir);
    if only_if_missing && path.exists() {
        return Ok(());
    }
    super::maps::write_atomic(&path, render_crt_list(lines).as_bytes())
}

/// Writes a file only its owner (and group) may read: it holds a private key.
fn write_secret(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One line of `show ssl crt-list -n <list>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LiveLine {
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) filters: Vec<String>,
}

/// Parses `show ssl crt-list -n <list>`: `<file>:<line> [options] filters…`.
pub(crate) fn parse_crt_list(answer: &str) -> Vec<LiveLine> {
    answer
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut tokens = l.split_whitespace();
            let (file, line) = tokens.next()?.rsplit_once(':')?;
            let mut filters = Vec::new();
            let mut in_options = false;
            for t in tokens {
                if t.starts_with('[') {
                    in_options = true;
                }
                if !in_options {
                    filters.push(t.to_ascii_lowercase());
                }
                if t.ends_with(']') {
                    in_options = false;
                }
            }
            Some(LiveLine {
                file: file.to_owned(),
                line: line.parse().ok()?,
                filters,
            })
        })
        .collect()
}

/// Parses `show ssl cert`: (committed files, files with an ongoing transaction).
pub(crate) fn parse_cert_list(answer: &str) -> (Vec<String>, Vec<String>) {
    let (mut files, mut transactions) = (Vec::new(), Vec::new());
    for l in answer.lines().map(str::trim) {
        if let Some(t) = l.strip_prefix('*') {
            transactions.push(t.to_owned());
        } else if !l.is_empty() && !l.starts_with('#') {
            files.push(l.to_owned());
        }
    }
    (files, transactions)
}

/// What `show ssl cert <file>` says of one certificate: its leaf's fingerprint and DNS
/// names.
pub(crate) fn parse_cert_details(answer: &str) -> (Option<String>, Vec<String>) {
    let mut fingerprint = None;
    let mut names = Vec::new();
    for l in answer.lines() {
        if let Some(f) = l.strip_prefix("SHA1 FingerPrint:") {
            fingerprint = Some(f.trim().to_ascii_uppercase());
        } else if let Some(sans) = l.strip_prefix("Subject Alternative Name:") {
            names.extend(
                sans.split(',')
                    .filter_map(|s| s.trim().strip_prefix("DNS:"))
                    .map(str::to_ascii_lowercase),
            );
        }
    }
    (fingerprint, names)
}

/// A refusal by HAProxy is the certificate's fault; anything else may pass.
fn cert_error(id: &str, e: RuntimeError) -> LbError {
    match e {
        RuntimeError::Command { .. } => LbError::Rejected(format!("certificate {id}: {e}")),
        other => transient(other),
    }
}

impl HaproxyAdapter {
    /// Whether the running worker loaded podgate's crt-list (a TLS bind of the rendered
    /// frontend, or the operator's own, uses it).
    pub(super) async fn crt_list_loaded(&self) -> Result<bool, LbError> {
        let answer = self.rt.raw("show ssl crt-list").await.map_err(transient)?;
        let list = crt_list_path(&self.settings.config_dir);
        Ok(answer.lines().any(|l| Path::new(l.trim()) == list))
    }

    /// This owner's certificates in the worker's store: (committed, in a transaction).
    pub(super) async fn live_certs(&self) -> Result<(BTreeSet<String>, Vec<String>), LbError> {
        let answer = self.rt.raw("show ssl cert").await.map_err(transient)?;
        let (files, transactions) = parse_cert_list(&answer);
        let dir = &self.settings.config_dir;
        let ours = |f: &String| own_stem(&self.names, dir, f).is_some();
        Ok((
            files.into_iter().filter(ours).collect(),
            transactions.into_iter().filter(ours).collect(),
        ))
    }

    /// podgate's lines of the crt-list as the worker holds them.
    pub(super) async fn live_lines(&self) -> Result<Vec<LiveLine>, LbError> {
        let dir = &self.settings.config_dir;
        let list = escape_arg(&crt_list_path(dir).to_string_lossy());
        let answer = self
            .rt
            .raw(&format!("show ssl crt-list -n {list}"))
            .await
            .map_err(transient)?;
        Ok(parse_crt_list(&answer)
            .into_iter()
            .filter(|l| own_stem(&self.names, dir, &l.file).is_some())
            .collect())
    }

    /// Brings the worker's certificates and crt-list to `certs` and the hosts of
    /// `routes`, and the files on disk with them. `fresh`: the worker may hold anything
    /// (compare fingerprints); otherwise it holds `held`, as last applied.
    pub(super) async fn sync_certs(
        &self,
        held: &BTreeMap<String, Certificate>,
        certs: &BTreeMap<String, Certificate>,
        lines: &BTreeMap<String, Vec<String>>,
        fresh: bool,
        crt_list_loaded: bool,
    ) -> Result<(), LbError> {
        let dir = &self.settings.config_dir;
        let (live, transactions) = self.live_certs().await?;
        for t in &transactions {
            // Left by an apply that failed half-way: HAProxy runs one at a time.
            let _ = self
                .rt
                .raw(&format!("abort ssl cert {}", escape_arg(t)))
                .await;
        }
        for (id, c) in certs {
            let file = cert_path(&self.names, dir, id);
            let created = !live.contains(&file);
            let changed = if created {
                self.rt
                    .run(
                        &format!("new ssl cert {}", escape_arg(&file)),
                        &["New empty certificate store"],
                    )
                    .await
                    .map_err(|e| cert_error(id, e))?;
                true
            } else if fresh {
                self.live_fingerprint(&file).await? != fingerprint(c)
            } else {
                held.get(id) != Some(c)
            };
            if changed || !Path::new(&file).exists() {
                let pem = bundle(c)?;
                if changed {
                    self.load_cert(id, &file, &pem, created).await?;
                }
                write_secret(Path::new(&file), pem.as_bytes())
                    .map_err(|e| LbError::Transient(format!("cannot write {file}: {e}")))?;
            }
        }
        write_crt_list(dir, lines, false)
            .map_err(|e| LbError::Transient(format!("cannot write the crt-list: {e}")))?;
        if crt_list_loaded {
            self.sync_lines(lines).await?;
        }
        let wanted: BTreeSet<String> = certs
            .keys()
            .map(|id| cert_path(&self.names, dir, id))
            .collect();
        for file in live.difference(&wanted) {
            let answer = self
                .rt
                .raw(&format!("del ssl cert {}", escape_arg(file)))
                .await
                .map_err(transient)?;
            if !answer.contains("deleted") {
                tracing::warn!(lb = %self.name, %file, answer = answer.trim(), "HAProxy keeps a removed certificate");
            }
        }
        self.sweep_cert_files(&wanted);
        Ok(())
    }

    async fn live_fingerprint(&self, file: &str) -> Result<Option<String>, LbError> {
        let answer = self
            .rt
            .raw(&format!("show ssl cert {}", escape_arg(file)))
            .await
            .map_err(transient)?;
        Ok(parse_cert_details(&answer).0)
    }

    /// `set ssl cert` + `commit ssl cert`; on a refusal the transaction is aborted (and a
    /// store entry just created removed again), so nothing of it stays.
    async fn load_cert(
        &self,
        id: &str,
        file: &str,
        pem: &str,
        created: bool,
    ) -> Result<(), LbError> {
        let f = escape_arg(file);
        let result = async {
            self.rt
                .run(
                    &format!("set ssl cert {f} <<\n{pem}\n"),
                    &["Transaction created", "Transaction updated"],
                )
                .await?;
            let command = format!("commit ssl cert {f}");
            let answer = self.rt.raw(&command).await?;
            if answer.contains("Success!") {
                Ok(())
            } else {
                Err(RuntimeError::Command {
                    command,
                    answer: answer.trim().to_owned(),
                })
            }
        }
        .await;
        if let Err(e) = result {
            let _ = self.rt.raw(&format!("abort ssl cert {f}")).await;
            if created {
                let _ = self.rt.raw(&format!("del ssl cert {f}")).await;
            }
            return Err(cert_error(id, e));
        }
        Ok(())
    }

    /// The crt-list lines between live and `lines`: a new or changed line is added
    /// first, then the old lines of that file go (by line number), so SNI never falls
    /// through in between.
    async fn sync_lines(&self, lines: &BTreeMap<String, Vec<String>>) -> Result<(), LbError> {
        let list = escape_arg(&crt_list_path(&self.settings.config_dir).to_string_lossy());
        let mut live: BTreeMap<String, Vec<LiveLine>> = BTreeMap::new();
        for l in self.live_lines().await? {
            live.entry(l.file.clone()).or_default().push(l);
        }
        let files: BTreeSet<&String> = lines.keys().chain(live.keys()).collect();
        for file in files {
            let old = live.get(file).map_or(&[][..], Vec::as_slice);
            let want = lines.get(file);
            let same = match (want, old) {
                (Some(w), [one]) => {
                    let mut have = one.filters.clone();
                    have.sort();
                    have == *w
                }
                (None, []) => true,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some(filters) = want {
                let payload = format!("{} {}", escape_arg(file), filters.join(" "));
                let command = format!("add ssl crt-list {list} <<\n{payload}\n\n");
                let answer = self.rt.raw(&command).await.map_err(transient)?;
                if !answer.contains("Success!") {
                    return Err(LbError::Transient(format!(
                        "HAProxy refused a crt-list line for {file}: {}",
                        answer.trim()
                    )));
                }
            }
            for l in old {
                let command = format!("del ssl crt-list {list} {}:{}", escape_arg(file), l.line);
                self.rt.run(&command, &["Entry"]).await.map_err(transient)?;
            }
        }
        Ok(())
    }

    /// Removes this owner's certificate files that are no longer wanted.
    fn sweep_cert_files(&self, wanted: &BTreeSet<String>) {
        let dir = &self.settings.config_dir;
        let Ok(entries) = std::fs::read_dir(dir.join(CERT_DIR)) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path().to_string_lossy().into_owned();
            if own_stem(&self.names, dir, &path).is_some() && !wanted.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgate_core::model::{HostPattern, Pem, VirtualHost};

    fn cert(id: &str, name: &str) -> Certificate {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        Certificate {
            id: id.to_owned(),
            cert_pem: Pem(made.cert.pem().into()),
            key_pem: Pem(made.signing_key.serialize_pem().into()),
        }
    }

    #[test]
    fn bundles_are_checked_and_carry_no_blank_line() {
        let mut c = cert("ns/a", "a.example");
        c.cert_pem = Pem(format!("\r\n{}\r\n\r\n", c.cert_pem.0.replace('\n', "\r\n")).into());
        let b = bundle(&c).unwrap();
        assert!(!b.contains("\n\n") && !b.contains('\r') && b.ends_with('\n'));
        assert!(b.contains("BEGIN CERTIFICATE") && b.contains("PRIVATE KEY"));
        let mut bad = c.clone();
        bad.cert_pem = Pem("not a certificate".into());
        let err = bundle(&bad).unwrap_err().to_string();
        assert!(err.contains("ns/a") && !err.contains("PRIVATE"), "{err}");
        let mut no_key = c;
        no_key.key_pem = Pem("".into());
        assert!(matches!(bundle(&no_key), Err(LbError::Rejected(_))));
    }

    #[test]
    fn hosts_that_name_a_held_certificate_become_its_sni_filters() {
        let names = Names::new(Some("team"));
        let dir = Path::new("/etc/pg");
        let certs: BTreeMap<String, Certificate> = [cert("ns/a", "a.example")]
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut routes = RouteTable::default();
        for (host, tls) in [
            ("b.example", Some("ns/a")),
            ("*.w.example", Some("ns/a")),
            ("c.example", Some("ns/missing")),
            ("d.example", None),
        ] {
            routes.hosts.insert(
                HostPattern::parse(host).unwrap(),
                VirtualHost {
                    tls: tls.map(str::to_owned),
                    ..VirtualHost::default()
                },
            );
        }
        let lines = crt_lines(&names, dir, &routes, &certs);
        let file = cert_path(&names, dir, "ns/a");
        assert!(file.starts_with("/etc/pg/certs/pg_o"));
        assert_eq!(Path::new(&file).extension(), Some("pem".as_ref()));
        assert_eq!(
            own_stem(&names, dir, &file),
            Some(names.cert("ns/a").as_str())
        );
        assert_eq!(own_stem(&Names::new(None), dir, &file), None);
        assert_eq!(
            lines,
            BTreeMap::from([(file.clone(), vec!["*.w.example".into(), "b.example".into()])])
        );
        assert_eq!(
            render_crt_list(&lines),
            format!("{file} *.w.example b.example\n")
        );
    }

    #[test]
    fn haproxy_answers_parse() {
        let lines = parse_crt_list(
            "# /d/certificates.list\n/d/certs/a.pem:1 a.example\n\
             /d/certs/a.pem:3 [alpn h2 ocsp-update on] A.example *.w.example\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[1].line, &lines[1].filters[..]),
            (3, &["a.example".to_owned(), "*.w.example".to_owned()][..])
        );
        let (files, tx) =
            parse_cert_list("# transaction\n*/d/certs/b.pem\n# filename\n/d/certs/a.pem\n");
        assert_eq!(
            (files, tx),
            (
                vec!["/d/certs/a.pem".to_owned()],
                vec!["/d/certs/b.pem".to_owned()]
            )
        );
        let (fp, names) = parse_cert_details(
            "Filename: /d/a.pem\nSubject Alternative Name: DNS:a.example, DNS:*.W.example, IP:1.2.3.4\n\
             SHA1 FingerPrint: 5ce0\n",
        );
        assert_eq!(fp.as_deref(), Some("5CE0"));
        assert_eq!(names, vec!["a.example", "*.w.example"]);
    }

    #[test]
    fn the_fingerprint_is_the_leafs() {
        let c = cert("ns/a", "a.example");
        let fp = fingerprint(&c).unwrap();
        assert_eq!(fp.len(), 40);
        assert!(
            fp.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
    }
}
