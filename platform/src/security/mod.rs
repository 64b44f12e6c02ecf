//! Who may call and over what: bearer tokens on the write calls, TLS on
//! servers and upstream connections, and secrets kept out of logs.
pub mod auth;
pub mod tls;
mod token;

pub use auth::{AuthArgs, Authorization, ProtectedCall};
pub use tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsArgs};
pub use token::Token;
