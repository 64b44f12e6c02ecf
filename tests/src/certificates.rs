//! A certificate authority of the test's own (rcgen), for servers and
//! clients that speak TLS in the tests.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority of the test's own, its certificate in `ca.pem`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("a UTF-8 path")
    }

    pub fn key(&self) -> &str {
        self.key.to_str().expect("a UTF-8 path")
    }
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("a CA");
        std::fs::write(dir.join(format!("{name}-ca.pem")), issuer.pem()).expect("write the CA certificate");
        Self { issuer, dir: dir.to_owned(), name: name.to_owned() }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    pub fn ca(&self) -> String {
        self.ca_file().to_str().expect("a UTF-8 path").to_owned()
    }

    /// A certificate for `names` (DNS names or IPs), good for servers and
    /// clients alike, written as `FILE.pem` and `FILE.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("a key");
        let certificate = params.signed_by(&key, &*self.issuer).expect("a certificate");
        let issued = Issued {
            cert: self.dir.join(format!("{}-{file}.pem", self.name)),
            key: self.dir.join(format!("{}-{file}.key", self.name)),
        };
        std::fs::write(&issued.cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write the key");
        issued
    }
}
