//! Bearer tokens for the authenticated writes of metadata and rating:
//! signed in the test (any claims, expired ones too) or printed by the real
//! `mint-token`, as users get them.
use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};

/// The HS256 secret the tests give the services (`--auth-hs256-secret`).
pub const SECRET: &str = "e2e-hs256-secret-5f0c3a9e1b7d4c2a";

/// An HS256 token signed with `secret`, granting `scope`, that expires
/// `expires_in` seconds from now (in the past when negative).
pub fn signed(secret: &str, scope: &str, expires_in: i64) -> String {
    let exp = get_current_timestamp().saturating_add_signed(expires_in);
    let claims = serde_json::json!({"scope": scope, "exp": exp});
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("an HS256 token")
}

/// `request` with `authorization: Bearer <token>`.
pub fn with_bearer<T>(request: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    let value = format!("Bearer {token}").parse().expect("a token is a valid header value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// What `mint-token ARGS` prints, with `envs` set.
pub fn mint(args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(crate::process::binary("mint-token"))
        .args(args)
        .env_remove("AUTH_HS256_SECRET")
        .envs(envs.iter().copied())
        .output()
        .expect("run mint-token");
    assert!(output.status.success(), "mint-token failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("a UTF-8 token").trim().to_owned()
}
