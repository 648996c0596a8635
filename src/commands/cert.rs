//! `strongroom cert self-signed`: a server certificate and key to try TLS
//! with, and optionally a client CA with client certificates to try mutual
//! TLS, all without openssl. Writes new files only (keys mode 0600); never
//! overwrites one and never prints key material.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use strongroom::cli::{CertCommand, SelfSignedArgs};
use time::{Duration, OffsetDateTime};

/// Names the server certificate is for when none are given: what a client
/// on the same machine would connect to.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long the certificates are valid: long enough to try things out,
/// short enough not to be mistaken for a production certificate.
const VALID_FOR: Duration = Duration::days(365);

pub fn run(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::SelfSigned(args) => self_signed(&args),
    }
}

/// A certificate and its key, as PEM, ready to be written.
struct Issued {
    cert_pem: String,
    key_pem: String,
    sha256: [u8; 32],
}

fn self_signed(args: &SelfSignedArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = if args.names.is_empty() {
        DEFAULT_NAMES
            .iter()
            .map(|name| (*name).to_owned())
            .collect()
    } else {
        args.names.clone()
    };
    let out = &args.out;
    let mut files = vec![out.join("cert.pem"), out.join("key.pem")];
    if !args.clients.is_empty() {
        files.extend([out.join("ca.pem"), out.join("ca-key.pem")]);
        for client in &args.clients {
            files.push(out.join(format!("client-{client}.pem")));
            files.push(out.join(format!("client-{client}-key.pem")));
        }
    }
    // Checked before anything is written, so a refusal leaves no half set.
    if let Some(existing) = files.iter().find(|path| path.exists()) {
        anyhow::bail!("{} already exists; not overwriting it", existing.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let server = server_certificate(&names)?;
    write_pair(out, "cert.pem", "key.pem", &server)?;
    println!(
        "wrote {} (for {}) and {} (mode 0600)",
        out.join("cert.pem").display(),
        names.join(", "),
        out.join("key.pem").display()
    );
    println!("sha256 fingerprint {}", fingerprint(&server.sha256));

    if !args.clients.is_empty() {
        let (ca, issuer) = client_ca()?;
        write_pair(out, "ca.pem", "ca-key.pem", &ca)?;
        println!(
            "wrote client CA {} and {} (mode 0600)",
            out.join("ca.pem").display(),
            out.join("ca-key.pem").display()
        );
        for name in &args.clients {
            let client = client_certificate(name, &issuer)?;
            let cert = format!("client-{name}.pem");
            let key = format!("client-{name}-key.pem");
            write_pair(out, &cert, &key, &client)?;
            println!(
                "wrote client certificate {} and {} (mode 0600), sha256 fingerprint {}",
                out.join(&cert).display(),
                out.join(&key).display(),
                fingerprint(&client.sha256)
            );
        }
    }
    print_config(out, !args.clients.is_empty());
    Ok(ExitCode::SUCCESS)
}

fn server_certificate(names: &[String]) -> anyhow::Result<Issued> {
    if let Some(bad) = names.iter().find(|name| !is_host_name(name)) {
        anyhow::bail!("--name {bad:?} is neither an IP address nor a DNS name");
    }
    let mut params = CertificateParams::new(names.to_vec())
        .context("a --name is neither an IP address nor a DNS name")?;
    params.distinguished_name = common_name(&names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params);
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the server certificate")?;
    Ok(issued(cert.pem(), cert.der(), &key))
}

/// An IP address, or a DNS name (labels of letters, digits and inner
/// hyphens; the first may be a `*` wildcard), as a certificate can name.
fn is_host_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_prefix("*.").unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn client_ca() -> anyhow::Result<(Issued, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name("Strongroom client CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params);
    let key = KeyPair::generate().context("generating the client CA key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the client CA certificate")?;
    let ca = issued(cert.pem(), cert.der(), &key);
    Ok((ca, Issuer::new(params, key)))
}

fn client_certificate(name: &str, issuer: &Issuer<'_, KeyPair>) -> anyhow::Result<Issued> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut params);
    let key = KeyPair::generate().context("generating a client key")?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the client certificate for {name}"))?;
    Ok(issued(cert.pem(), cert.der(), &key))
}

fn issued(cert_pem: String, der: &[u8], key: &KeyPair) -> Issued {
    Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
        sha256: strongroom::crypto::sha256(der),
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    // An hour of slack for clocks that run a little behind.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + VALID_FOR;
}

fn write_pair(out: &Path, cert: &str, key: &str, issued: &Issued) -> anyhow::Result<()> {
    write_new(&out.join(cert), issued.cert_pem.as_bytes(), 0o644)?;
    write_new(&out.join(key), issued.key_pem.as_bytes(), 0o600)
}

/// Creates `path` (failing if it exists) with `mode` from the start, so a
/// key is never readable by others, not even for a moment.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// `AB:CD:…`, the form browsers and openssl show.
fn fingerprint(sha256: &[u8; 32]) -> String {
    sha256
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn print_config(out: &Path, with_clients: bool) {
    let absolute = |name: &str| -> PathBuf {
        let path = out.join(name);
        std::path::absolute(&path).unwrap_or(path)
    };
    println!("\nserve it with these lines in the config file:\n[tls]");
    println!("cert = {:?}", absolute("cert.pem").display().to_string());
    println!("key = {:?}", absolute("key.pem").display().to_string());
    if with_clients {
        println!("client_ca = {:?}", absolute("ca.pem").display().to_string());
        println!("# require_client_cert = true");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_ip_addresses_or_dns_names() {
        for good in [
            "localhost",
            "127.0.0.1",
            "::1",
            "uploads.example.com",
            "*.example.com",
            "a-b.c9",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "",
            "bad name!",
            "-a.com",
            "a-.com",
            "a..com",
            "*.",
            "a.*.com",
            "x/y",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
