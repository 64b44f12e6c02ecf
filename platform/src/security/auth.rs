//! Authenticated writes: with a key configured, the calls a service names
//! (its writes) need a JWT bearer token (`authorization: Bearer <JWT>`)
//! signed with that key, unexpired, and carrying the scope the call needs.
//! Everything else (reads, health, reflection) stays open. Off when no key
//! is given.
//!
//! The key decides the algorithm: a shared secret is HS256, an RSA public
//! key RS256, an EC P-256 public key ES256; a token whose header names any
//! other algorithm (`none`, HS256 against a public key, …) is refused. No
//! message, log line or `Debug` output carries a secret or a token.
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation, errors::ErrorKind};
use tonic::{Code, Status};

use super::Token;

const HS256_SECRET: &str = "--auth-hs256-secret (AUTH_HS256_SECRET)";
const HS256_SECRET_FILE: &str = "--auth-hs256-secret-file (AUTH_HS256_SECRET_FILE)";
const PUBLIC_KEY_FILE: &str = "--auth-public-key-file (AUTH_PUBLIC_KEY_FILE)";

/// RFC 7518 §3.2: an HS256 key is at least as long as the hash, 256 bits.
const MIN_SECRET_BYTES: usize = 32;

/// Clock skew allowed between the token's issuer and this server, for `exp`
/// and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// The key that write calls' tokens must be signed with, flattened into the
/// configuration of the services that have writes (metadata, rating).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Shared secret (at least 32 bytes) that bearer tokens of write calls are signed with (HS256); writes then need `authorization: Bearer <JWT>` [default: writes need no token]
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true,
        conflicts_with_all = ["auth_hs256_secret_file", "auth_public_key_file"])]
    pub auth_hs256_secret: Option<Token>,

    /// File holding the --auth-hs256-secret (a trailing newline is ignored)
    #[arg(long, env = "AUTH_HS256_SECRET_FILE", conflicts_with = "auth_public_key_file")]
    pub auth_hs256_secret_file: Option<PathBuf>,

    /// PEM public key that bearer tokens of write calls are signed with: RSA (RS256) or EC P-256 (ES256)
    #[arg(long, env = "AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<PathBuf>,

    /// Audience tokens must name in `aud` [default: any; a token with `aud` is then refused]
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Issuer tokens must name in `iss` [default: any]
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
}

impl AuthArgs {
    /// The authorization of `protected` calls these settings describe, the
    /// key read and checked; `None` when no key is given (writes open).
    pub fn authorization(&self, protected: &[ProtectedCall]) -> Result<Option<Authorization>, AuthError> {
        let Some(key) = self.verifying_key()? else {
            return Ok(None);
        };
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.validate_aud = self.auth_audience.is_some();
        let mut required = vec!["exp"];
        if let Some(audience) = &self.auth_audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &self.auth_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let verifier = TokenVerifier { key: key.key, algorithm: key.algorithm, validation };
        Ok(Some(Authorization { verifier: Arc::new(verifier), protected: protected.to_vec().into() }))
    }

    fn verifying_key(&self) -> Result<Option<VerifyingKey>, AuthError> {
        if let Some(secret) = hs256_secret(self.auth_hs256_secret.as_ref(), self.auth_hs256_secret_file.as_deref())? {
            let key = DecodingKey::from_secret(secret.expose().as_bytes());
            return Ok(Some(VerifyingKey { key, algorithm: Algorithm::HS256 }));
        }
        let Some(path) = &self.auth_public_key_file else {
            return Ok(None);
        };
        let pem = read(PUBLIC_KEY_FILE, path)?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Some(VerifyingKey { key, algorithm: Algorithm::RS256 }));
        }
        match DecodingKey::from_ec_pem(&pem) {
            // An uncompressed P-256 point: 0x04, then 32 bytes of x and of y.
            Ok(key) if key.try_get_as_bytes().is_ok_and(|point| point.len() == 65) => {
                Ok(Some(VerifyingKey { key, algorithm: Algorithm::ES256 }))
            }
            _ => Err(AuthError::NotAPublicKey { path: path.clone() }),
        }
    }
}

struct VerifyingKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// The HS256 secret given inline or in a file, checked for length; `None`
/// when neither is given. The minting tool reads it the same way.
pub fn hs256_secret(inline: Option<&Token>, file: Option<&Path>) -> Result<Option<Token>, AuthError> {
    let (setting, secret) = match (inline, file) {
        (Some(secret), _) => (HS256_SECRET, secret.clone()),
        (None, Some(path)) => {
            let bytes = read(HS256_SECRET_FILE, path)?;
            let text = String::from_utf8(bytes).map_err(|_| AuthError::SecretNotText { path: path.to_owned() })?;
            (HS256_SECRET_FILE, Token::from(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, None) => return Ok(None),
    };
    let length = secret.expose().len();
    if length < MIN_SECRET_BYTES {
        return Err(AuthError::ShortSecret { setting, length });
    }
    Ok(Some(secret))
}

/// The signing key for a PEM private key: RS256 for RSA, ES256 for EC P-256.
pub fn signing_key(path: &Path) -> Result<(EncodingKey, Algorithm), AuthError> {
    let pem = read("--private-key-file", path)?;
    if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    EncodingKey::from_ec_pem(&pem)
        .map(|key| (key, Algorithm::ES256))
        .map_err(|_| AuthError::NotAPrivateKey { path: path.to_owned() })
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read { setting, path: path.to_owned(), source })
}

/// Why the authentication settings cannot be used. Messages name settings
/// and files, never what they hold.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {setting} file {}", .path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting} is {length} bytes; HS256 needs at least {MIN_SECRET_BYTES} (e.g. `openssl rand -base64 32`)")]
    ShortSecret { setting: &'static str, length: usize },
    #[error("{HS256_SECRET_FILE} file {} is not UTF-8 text", .path.display())]
    SecretNotText { path: PathBuf },
    #[error(
        "{PUBLIC_KEY_FILE} file {} holds no RSA or EC P-256 public key (PEM, -----BEGIN PUBLIC KEY-----)",
        .path.display()
    )]
    NotAPublicKey { path: PathBuf },
    #[error("--private-key-file {} holds no RSA or EC P-256 private key (PEM)", .path.display())]
    NotAPrivateKey { path: PathBuf },
}

/// A call that needs a token, and the scope the token must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectedCall {
    /// The gRPC path, e.g. `/MetadataService/PutMetadata`.
    pub path: &'static str,
    pub scope: &'static str,
}

impl ProtectedCall {
    /// The method's name, the last part of its path.
    pub fn method(&self) -> &'static str {
        self.path.rsplit('/').next().unwrap_or(self.path)
    }
}

/// Checks bearer tokens against the configured key. Its `Debug` names the
/// algorithm only.
pub struct TokenVerifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenVerifier({:?})", self.algorithm)
    }
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    /// Space-separated, as OAuth 2.0 and RFC 8693 have it.
    #[serde(default)]
    scope: Option<String>,
    /// What some identity providers send instead: a list, or a string.
    #[serde(default)]
    scp: Option<Scopes>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Spaced(String),
}

impl Claims {
    fn grants(&self, scope: &str) -> bool {
        let spaced = |scopes: &str| scopes.split_ascii_whitespace().any(|granted| granted == scope);
        self.scope.as_deref().is_some_and(spaced)
            || match &self.scp {
                Some(Scopes::List(list)) => list.iter().any(|granted| granted == scope),
                Some(Scopes::Spaced(scopes)) => spaced(scopes),
                None => false,
            }
    }
}

/// Why a call was refused. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{method} needs a bearer token: send the header `authorization: Bearer <JWT>`")]
    Missing { method: &'static str },
    #[error("the authorization header is not `Bearer <JWT>`")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the bearer token is signed with {found}; this server takes only {expected}")]
    WrongAlgorithm { found: String, expected: String },
    #[error("the bearer token's signature does not verify with this server's key")]
    BadSignature,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the bearer token has no {0} claim, which this server requires")]
    MissingClaim(String),
    #[error("the bearer token's audience (aud) is not this server's")]
    WrongAudience,
    #[error("the bearer token's issuer (iss) is not the one this server trusts")]
    WrongIssuer,
    #[error("the bearer token does not carry the scope {scope}, which {method} needs")]
    MissingScope { method: &'static str, scope: &'static str },
}

impl Denied {
    /// UNAUTHENTICATED when the caller is not known; PERMISSION_DENIED when
    /// it is, but may not make the call.
    pub fn code(&self) -> Code {
        match self {
            Denied::MissingScope { .. } => Code::PermissionDenied,
            _ => Code::Unauthenticated,
        }
    }
}

impl From<Denied> for Status {
    fn from(denied: Denied) -> Self {
        Status::new(denied.code(), denied.to_string())
    }
}

impl TokenVerifier {
    /// Checks the `authorization` header of a call to `call`.
    pub fn check(&self, authorization: Option<&[u8]>, call: &ProtectedCall) -> Result<(), Denied> {
        let method = call.method();
        let header = authorization.ok_or(Denied::Missing { method })?;
        let header = std::str::from_utf8(header).map_err(|_| Denied::NotBearer)?.trim();
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(Denied::NotBearer),
        };
        let claims = self.verify(token)?;
        if !claims.grants(call.scope) {
            return Err(Denied::MissingScope { method, scope: call.scope });
        }
        Ok(())
    }

    fn verify(&self, token: &str) -> Result<Claims, Denied> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Denied::Malformed)?;
        if header.alg != self.algorithm {
            return Err(Denied::WrongAlgorithm {
                found: format!("{:?}", header.alg),
                expected: format!("{:?}", self.algorithm),
            });
        }
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            // The library's own messages can quote parts of the token: only
            // the kind of problem is kept.
            Err(error) => Err(match error.into_kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
                    Denied::BadSignature
                }
                ErrorKind::ExpiredSignature => Denied::Expired,
                ErrorKind::ImmatureSignature => Denied::NotYetValid,
                ErrorKind::MissingRequiredClaim(claim) => Denied::MissingClaim(claim),
                ErrorKind::InvalidAudience => Denied::WrongAudience,
                ErrorKind::InvalidIssuer => Denied::WrongIssuer,
                _ => Denied::Malformed,
            }),
        }
    }
}

/// Which calls need a token, and the verifier of their tokens; the server
/// runs it around its routes (`server::authorization`).
#[derive(Debug, Clone)]
pub struct Authorization {
    verifier: Arc<TokenVerifier>,
    protected: Arc<[ProtectedCall]>,
}

impl Authorization {
    /// The algorithm tokens must be signed with, for the start-up log line.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.verifier.algorithm)
    }

    /// Whether a call to `path` with this `authorization` header may go on:
    /// any call but a protected one may; a protected one needs a token that
    /// passes. A refusal names the call and why.
    pub fn admit(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), (&ProtectedCall, Denied)> {
        let Some(call) = self.protected.iter().find(|call| call.path == path) else {
            return Ok(());
        };
        self.verifier.check(authorization, call).map_err(|denied| (call, denied))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "an-hs256-secret-of-thirty-two-bytes-or-more";
    const PUT: ProtectedCall = ProtectedCall { path: "/MetadataService/PutMetadata", scope: "metadata:write" };

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        file
    }

    fn verifier(args: AuthArgs) -> Arc<TokenVerifier> {
        args.authorization(&[PUT]).unwrap().expect("a key is configured").verifier
    }

    fn hs256() -> Arc<TokenVerifier> {
        verifier(AuthArgs { auth_hs256_secret: Some(SECRET.parse().unwrap()), ..Default::default() })
    }

    fn in_an_hour() -> u64 {
        get_current_timestamp() + 3600
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, claims: Value) -> String {
        encode(&Header::new(algorithm), &claims, key).unwrap()
    }

    fn hs256_token(claims: Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
    }

    fn check(verifier: &TokenVerifier, header: &str) -> Result<(), Denied> {
        verifier.check(Some(header.as_bytes()), &PUT)
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// An RSA key pair: the private key's PEM and a file with the public key.
    /// Generated once (it takes seconds in a debug build).
    fn rsa_keys() -> (String, tempfile::NamedTempFile) {
        use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
        static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        let (private, public) = KEYS.get_or_init(|| {
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let public = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
            (private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(), public)
        });
        (private.clone(), file(public.as_bytes()))
    }

    /// An EC P-256 key pair, as [`rsa_keys`].
    fn ec_keys(algorithm: &'static rcgen::SignatureAlgorithm) -> (String, tempfile::NamedTempFile) {
        let pair = rcgen::KeyPair::generate_for(algorithm).unwrap();
        (pair.serialize_pem(), file(pair.public_key_pem().as_bytes()))
    }

    fn public_key(path: &Path) -> AuthArgs {
        AuthArgs { auth_public_key_file: Some(path.to_owned()), ..Default::default() }
    }

    #[test]
    fn no_key_leaves_writes_open() {
        assert!(AuthArgs::default().authorization(&[PUT]).unwrap().is_none());
    }

    #[test]
    fn a_token_signed_with_the_secret_and_carrying_the_scope_is_accepted() {
        let token = hs256_token(json!({"exp": in_an_hour(), "scope": "ratings:write metadata:write"}));
        assert_eq!(check(&hs256(), &bearer(&token)), Ok(()));
        // The scheme is case-insensitive (RFC 7235); spaces around are ignored.
        assert_eq!(check(&hs256(), &format!("  bearer   {token} ")), Ok(()));
        let listed = hs256_token(json!({"exp": in_an_hour(), "scp": ["metadata:write"]}));
        assert_eq!(check(&hs256(), &bearer(&listed)), Ok(()));
    }

    #[test]
    fn a_missing_or_non_bearer_header_or_garbage_is_unauthenticated() {
        let verifier = hs256();
        let missing = verifier.check(None, &PUT).unwrap_err();
        assert_eq!(missing, Denied::Missing { method: "PutMetadata" });
        assert_eq!(
            missing.to_string(),
            "PutMetadata needs a bearer token: send the header `authorization: Bearer <JWT>`"
        );
        let token = hs256_token(json!({"exp": in_an_hour(), "scope": "metadata:write"}));
        assert_eq!(check(&verifier, &token), Err(Denied::NotBearer), "no scheme");
        assert_eq!(check(&verifier, &format!("Basic {token}")), Err(Denied::NotBearer));
        assert_eq!(verifier.check(Some(b"Bearer \xff\xfe"), &PUT), Err(Denied::NotBearer));
        assert_eq!(check(&verifier, "Bearer "), Err(Denied::NotBearer), "no token");
        for garbage in ["Bearer abc", "Bearer a.b.c", "Bearer e30.e30.x"] {
            assert_eq!(check(&verifier, garbage), Err(Denied::Malformed), "{garbage}");
        }
        for denied in [missing, Denied::NotBearer, Denied::Malformed] {
            assert_eq!(denied.code(), Code::Unauthenticated);
        }
    }

    #[test]
    fn expired_not_yet_valid_and_exp_less_tokens_are_unauthenticated() {
        let verifier = hs256();
        let now = get_current_timestamp();
        let expired = hs256_token(json!({"exp": now - 3600, "scope": "metadata:write"}));
        assert_eq!(check(&verifier, &bearer(&expired)), Err(Denied::Expired));
        let early = hs256_token(json!({"exp": now + 7200, "nbf": now + 3600, "scope": "metadata:write"}));
        assert_eq!(check(&verifier, &bearer(&early)), Err(Denied::NotYetValid));
        let forever = hs256_token(json!({"scope": "metadata:write"}));
        assert_eq!(check(&verifier, &bearer(&forever)), Err(Denied::MissingClaim("exp".into())));
        assert_eq!(Denied::Expired.code(), Code::Unauthenticated);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_unauthenticated() {
        let other = EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes-or-more");
        let token = sign(Algorithm::HS256, &other, json!({"exp": in_an_hour(), "scope": "metadata:write"}));
        assert_eq!(check(&hs256(), &bearer(&token)), Err(Denied::BadSignature));
        // A token whose payload was changed after signing.
        let good = hs256_token(json!({"exp": in_an_hour(), "scope": "ratings:write"}));
        let forged_payload = hs256_token(json!({"exp": in_an_hour(), "scope": "metadata:write"}));
        let [header, _, signature] = good.split('.').collect::<Vec<_>>()[..] else { panic!() };
        let forged = format!("{header}.{}.{signature}", forged_payload.split('.').nth(1).unwrap());
        assert_eq!(check(&hs256(), &bearer(&forged)), Err(Denied::BadSignature));
    }

    #[test]
    fn a_valid_token_without_the_scope_is_permission_denied_naming_it() {
        let verifier = hs256();
        for claims in [
            json!({"exp": in_an_hour(), "scope": "ratings:write metadata:writer"}),
            json!({"exp": in_an_hour()}),
            json!({"exp": in_an_hour(), "scp": ["metadata:read"]}),
        ] {
            let denied = check(&verifier, &bearer(&hs256_token(claims.clone()))).unwrap_err();
            assert_eq!(denied, Denied::MissingScope { method: "PutMetadata", scope: "metadata:write" }, "{claims}");
            assert_eq!(denied.code(), Code::PermissionDenied);
            assert_eq!(
                denied.to_string(),
                "the bearer token does not carry the scope metadata:write, which PutMetadata needs"
            );
        }
    }

    #[test]
    fn rs256_and_es256_tokens_verify_with_the_public_key() {
        let (rsa_private, rsa_public) = rsa_keys();
        let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap();
        let (ec_private, ec_public) = ec_keys(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ec = EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap();
        let claims = json!({"exp": in_an_hour(), "scope": "metadata:write"});

        let rs256 = verifier(public_key(rsa_public.path()));
        assert_eq!(format!("{rs256:?}"), "TokenVerifier(RS256)");
        assert_eq!(check(&rs256, &bearer(&sign(Algorithm::RS256, &rsa, claims.clone()))), Ok(()));
        let es256 = verifier(public_key(ec_public.path()));
        assert_eq!(format!("{es256:?}"), "TokenVerifier(ES256)");
        assert_eq!(check(&es256, &bearer(&sign(Algorithm::ES256, &ec, claims.clone()))), Ok(()));

        // Each refuses the other's tokens, and a token of another key pair.
        let wrong = Denied::WrongAlgorithm { found: "ES256".into(), expected: "RS256".into() };
        assert_eq!(check(&rs256, &bearer(&sign(Algorithm::ES256, &ec, claims.clone()))), Err(wrong));
        let (other_private, _) = ec_keys(&rcgen::PKCS_ECDSA_P256_SHA256);
        let other = EncodingKey::from_ec_pem(other_private.as_bytes()).unwrap();
        assert_eq!(check(&es256, &bearer(&sign(Algorithm::ES256, &other, claims))), Err(Denied::BadSignature));
    }

    #[test]
    fn tokens_of_another_algorithm_are_refused_none_and_hs256_with_the_public_key_among_them() {
        let (_, rsa_public) = rsa_keys();
        let rs256 = verifier(public_key(rsa_public.path()));
        let claims = json!({"exp": in_an_hour(), "scope": "metadata:write"});
        // The classic confusion: the public key, which anyone has, used as an HMAC secret.
        let public_pem = std::fs::read(rsa_public.path()).unwrap();
        let confused = sign(Algorithm::HS256, &EncodingKey::from_secret(&public_pem), claims.clone());
        let wrong = Denied::WrongAlgorithm { found: "HS256".into(), expected: "RS256".into() };
        assert_eq!(check(&rs256, &bearer(&confused)), Err(wrong));

        let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET.as_bytes()), claims.clone());
        let wrong = Denied::WrongAlgorithm { found: "HS512".into(), expected: "HS256".into() };
        assert_eq!(check(&hs256(), &bearer(&hs512)), Err(wrong));

        // An unsigned token: {"alg":"none","typ":"JWT"}, the claims, no signature.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let claims_part = hs512.split('.').nth(1).unwrap();
        let unsigned = format!("{none_header}.{claims_part}.");
        assert_eq!(check(&hs256(), &bearer(&unsigned)), Err(Denied::Malformed));
        assert_eq!(check(&rs256, &bearer(&unsigned)), Err(Denied::Malformed));
    }

    #[test]
    fn audience_and_issuer_are_required_once_configured() {
        let verifier = verifier(AuthArgs {
            auth_hs256_secret: Some(SECRET.parse().unwrap()),
            auth_audience: Some("movies".into()),
            auth_issuer: Some("https://issuer.example".into()),
            ..Default::default()
        });
        let exp = in_an_hour();
        let scope = "metadata:write";
        let token = |claims: Value| bearer(&hs256_token(claims));
        let iss = "https://issuer.example";
        assert_eq!(check(&verifier, &token(json!({"exp": exp, "scope": scope, "aud": "movies", "iss": iss}))), Ok(()));
        assert_eq!(
            check(&verifier, &token(json!({"exp": exp, "scope": scope, "aud": "other", "iss": iss}))),
            Err(Denied::WrongAudience)
        );
        assert_eq!(
            check(&verifier, &token(json!({"exp": exp, "scope": scope, "aud": "movies", "iss": "someone"}))),
            Err(Denied::WrongIssuer)
        );
        assert_eq!(
            check(&verifier, &token(json!({"exp": exp, "scope": scope, "iss": iss}))),
            Err(Denied::MissingClaim("aud".into()))
        );
    }

    #[test]
    fn short_secrets_unreadable_files_and_files_that_hold_no_key_are_refused_without_quoting_them() {
        let short = AuthArgs { auth_hs256_secret: Some("too-short-secret".parse().unwrap()), ..Default::default() };
        let error = short.authorization(&[PUT]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--auth-hs256-secret (AUTH_HS256_SECRET) is 16 bytes; HS256 needs at least 32 (e.g. `openssl rand -base64 32`)"
        );
        assert!(!format!("{error:?}").contains("too-short-secret"));

        let missing = public_key(Path::new("/nonexistent/key.pem")).authorization(&[PUT]).unwrap_err();
        assert_eq!(
            telemetry::Chain(&missing).to_string(),
            "cannot read --auth-public-key-file (AUTH_PUBLIC_KEY_FILE) file /nonexistent/key.pem: \
             No such file or directory (os error 2)"
        );

        let (private, _) = ec_keys(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, p384) = ec_keys(&rcgen::PKCS_ECDSA_P384_SHA384);
        let not_pem = file(SECRET.as_bytes());
        let private = file(private.as_bytes());
        for path in [not_pem.path(), private.path(), p384.path()] {
            let error = public_key(path).authorization(&[PUT]).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "--auth-public-key-file (AUTH_PUBLIC_KEY_FILE) file {} holds no RSA or EC P-256 public key (PEM, \
                     -----BEGIN PUBLIC KEY-----)",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_secret_file_may_end_with_a_newline() {
        let secret_file = file(format!("{SECRET}\n").as_bytes());
        let verifier =
            verifier(AuthArgs { auth_hs256_secret_file: Some(secret_file.path().into()), ..Default::default() });
        let token = hs256_token(json!({"exp": in_an_hour(), "scope": "metadata:write"}));
        assert_eq!(check(&verifier, &bearer(&token)), Ok(()));
    }

    #[test]
    fn only_one_key_may_be_given() {
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            auth: AuthArgs,
        }
        use clap::Parser as _;
        let both = ["probe", "--auth-hs256-secret", SECRET, "--auth-public-key-file", "key.pem"];
        let error = Probe::try_parse_from(both).err().expect("two keys conflict");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(!error.to_string().contains(SECRET), "{error}");
        let file_and_key = ["probe", "--auth-hs256-secret-file", "s", "--auth-public-key-file", "key.pem"];
        assert!(Probe::try_parse_from(file_and_key).is_err());
        assert!(Probe::try_parse_from(["probe", "--auth-hs256-secret-file", "s"]).is_ok());
    }
}
