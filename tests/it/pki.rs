//! Test PKI and TLS servers for the https tests: a throwaway CA and leaf certificates made
//! with the openssl CLI (valid, expired, for another host, self-signed), rustls server
//! configurations, a TLS-terminating TCP forwarder (to put the development provider behind
//! https) and an `openssl s_server` that speaks only an old TLS version.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// Runs the openssl CLI in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A throwaway CA in its own temporary directory (removed on drop); `ca` is its PEM
/// certificate, what `server.upstream_ca_file` names.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA under a directory unique to this process and `name`.
    pub fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("portcullis-pki-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["req", "-x509"];
        args.extend(EC_KEY);
        args.extend([
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=portcullis test CA",
        ]);
        openssl(&dir, &args);
        Pki {
            ca: dir.join("ca.pem"),
            dir,
        }
    }

    /// A key and CSR for `name` (file stem), subject CN `cn`; writes `name.ext` holding the
    /// subjectAltName `san` (e.g. `IP:127.0.0.1`, `DNS:idp.example`).
    fn csr(&self, name: &str, cn: &str, san: &str) {
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        let (key, csr, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req"];
        args.extend(EC_KEY);
        args.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&self.dir, &args);
    }

    fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        )
    }

    /// A certificate signed by the CA, valid for two days, for `san`: (cert, key) PEM paths.
    pub fn leaf(&self, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
        self.csr(name, cn, san);
        let (csr, pem, ext) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        self.files(name)
    }

    /// A certificate signed by the CA for `san` whose validity ended in 2021 (`openssl ca`
    /// with explicit dates: OpenSSL 3.0's `x509 -req` cannot back-date).
    pub fn expired_leaf(&self, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
        self.csr(name, cn, san);
        std::fs::write(self.dir.join("index.txt"), "").unwrap();
        std::fs::write(self.dir.join("ca.serial"), "1000\n").unwrap();
        std::fs::write(
            self.dir.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = ca.serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
             [any]\ncommonName = supplied\n",
        )
        .unwrap();
        let (csr, pem, ext) = (
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                "ca.cnf",
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca.key",
                "-in",
                &csr,
                "-out",
                &pem,
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20210101000000Z",
                "-extfile",
                &ext,
            ],
        );
        self.files(name)
    }

    /// A self-signed certificate for `san`, not issued by the CA.
    pub fn self_signed(&self, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
        let (key, pem, subj, ext) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
            format!("subjectAltName={san}"),
        );
        // A server certificate (CA:FALSE), as a self-signed IdP would present.
        let mut args = vec!["req", "-x509"];
        args.extend(EC_KEY);
        args.extend([
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            &ext,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ]);
        openssl(&self.dir, &args);
        self.files(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, ring) presenting `cert` with `key`.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS-terminating TCP forwarder: accepts TLS on `listener` with `cfg` and copies the
/// plaintext both ways to `backend`. Returns the number of completed handshakes so far.
pub fn tls_front(
    listener: TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    backend: SocketAddr,
) -> Arc<AtomicUsize> {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    handshakes
}

/// `openssl s_server` limited to one old protocol version (`-tls1`, `-tls1_1`), with the
/// security level lowered so that OpenSSL 3 agrees to speak it. Killed on drop.
pub struct OldTlsServer {
    pub addr: SocketAddr,
    child: Child,
    // Kept open: s_server must not meet a closed stdout (SIGPIPE) while the test runs.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl OldTlsServer {
    /// Starts it on 127.0.0.1 (a free port) presenting `cert`; returns once it listens.
    pub fn start(version_flag: &str, cert: &Path, key: &Path) -> OldTlsServer {
        let mut child = Command::new("openssl")
            .args(["s_server", version_flag, "-cipher", "DEFAULT@SECLEVEL=0"])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(["-accept", "127.0.0.1:0", "-www"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server (installed by scripts/test.sh)");
        // It prints `ACCEPT 127.0.0.1:PORT` once listening.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("openssl s_server {version_flag} exited before listening");
            }
            if let Some(a) = line.trim().strip_prefix("ACCEPT ") {
                break a.parse().unwrap();
            }
        };
        OldTlsServer {
            addr,
            child,
            _stdout: out,
        }
    }
}

impl Drop for OldTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
