//! `mint-token`: prints a JWT for the write calls of metadata and rating
//! when they run with a key (`--auth-*`), e.g.
//! `mint-token --scope metadata:write --expires-in 1h` with the same
//! `AUTH_HS256_SECRET` as the service, or `--private-key-file` (RSA: RS256,
//! EC P-256: ES256) for a service given the public key.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use jsonwebtoken::{EncodingKey, Header};
use platform::security::{Token, auth};
use telemetry::Chain;

#[derive(Debug, Parser)]
#[command(about = "Print a JWT bearer token for the write calls of the metadata and rating services")]
struct Args {
    /// A scope the token grants: metadata:write (PutMetadata), ratings:write (PutRating, DeleteRating); repeat for more
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,

    /// How long the token is valid (e.g. 15m, 1h, 7d)
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    expires_in: Duration,

    /// The `sub` claim: who the token is for [default: none]
    #[arg(long)]
    subject: Option<String>,

    /// The `aud` claim, for a service run with --auth-audience
    #[arg(long)]
    audience: Option<String>,

    /// The `iss` claim, for a service run with --auth-issuer
    #[arg(long)]
    issuer: Option<String>,

    /// The service's shared secret (HS256)
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true,
        conflicts_with_all = ["hs256_secret_file", "private_key_file"])]
    hs256_secret: Option<Token>,

    /// File holding the shared secret (HS256)
    #[arg(long, env = "AUTH_HS256_SECRET_FILE", conflicts_with = "private_key_file")]
    hs256_secret_file: Option<PathBuf>,

    /// PEM private key whose public key the service has (RSA: RS256, EC P-256: ES256)
    #[arg(long)]
    private_key_file: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    scope: String,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

fn mint(args: &Args) -> Result<String, Box<dyn std::error::Error>> {
    let (key, algorithm) = match auth::hs256_secret(args.hs256_secret.as_ref(), args.hs256_secret_file.as_deref())? {
        Some(secret) => (EncodingKey::from_secret(secret.expose().as_bytes()), jsonwebtoken::Algorithm::HS256),
        None => match &args.private_key_file {
            Some(path) => auth::signing_key(path)?,
            None => {
                return Err(
                    "give a key: --hs256-secret (AUTH_HS256_SECRET), --hs256-secret-file or --private-key-file".into(),
                );
            }
        },
    };
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        scope: args.scopes.join(" "),
        exp: now + args.expires_in.as_secs(),
        iat: now,
        sub: args.subject.as_deref(),
        aud: args.audience.as_deref(),
        iss: args.issuer.as_deref(),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key)
        .map_err(|_| "cannot sign the token with this key".into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match mint(&args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mint-token: {}", Chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
