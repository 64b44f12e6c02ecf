//! The bearer tokens of [`crate::security::auth`], checked around every
//! call: a refused call is answered at once with its status, and logged.
use tonic::Status;

use super::call_layer::{Answer, AroundCall, Inner};
use crate::security::Authorization;

impl AroundCall for Authorization {
    fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B> {
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes);
        match self.admit(request.uri().path(), authorization) {
            Ok(()) => Box::pin(inner.forward(request)),
            Err((call, denied)) => {
                tracing::info!(rpc_method = call.method(), reason = %denied, "call refused");
                Box::pin(std::future::ready(Ok(Status::from(denied).into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use crate::{
        security::{AuthArgs, ProtectedCall},
        server::call_layer::CallLayer,
    };

    const SECRET: &str = "an-hs256-secret-of-thirty-two-bytes-or-more";
    const PUT: ProtectedCall = ProtectedCall { path: "/MetadataService/PutMetadata", scope: "metadata:write" };

    fn bearer(scope: &str) -> String {
        let claims = json!({"exp": get_current_timestamp() + 3600, "scope": scope});
        let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn the_layer_refuses_protected_calls_without_a_token_and_lets_others_through() {
        use tower::{Layer as _, ServiceExt as _};
        let authorization = AuthArgs { auth_hs256_secret: Some(SECRET.parse().unwrap()), ..Default::default() }
            .authorization(&[PUT])
            .unwrap()
            .unwrap();
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let service = CallLayer(authorization).layer(inner);
        let status = |response: &http::Response<tonic::body::Body>| {
            response.headers().get("grpc-status").map(|value| value.to_str().unwrap().to_owned())
        };
        let request = |path: &str, authorization: Option<String>| {
            let mut request = http::Request::builder().uri(path);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            request.body(()).unwrap()
        };
        let refused = service.clone().oneshot(request(PUT.path, None)).await.unwrap();
        assert_eq!(status(&refused).as_deref(), Some("16"));
        let read = service.clone().oneshot(request("/MetadataService/GetMetadata", None)).await.unwrap();
        assert_eq!(status(&read), None, "reads stay open");
        let denied = service.clone().oneshot(request(PUT.path, Some(bearer("ratings:write")))).await.unwrap();
        assert_eq!(status(&denied).as_deref(), Some("7"));
        let allowed = service.oneshot(request(PUT.path, Some(bearer("metadata:write")))).await.unwrap();
        assert_eq!(status(&allowed), None);
    }
}
