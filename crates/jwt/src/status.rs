//! Why a JWT was refused, with the words Envoy answers with (its
//! `jwt_verify_lib` status strings), so clients and logs read the same.

use std::sync::OnceLock;

macro_rules! statuses {
    ($($name:ident => $text:literal,)+) => {
        /// A verification outcome other than success.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Status {
            $($name,)+
        }

        const ALL: &[Status] = &[$(Status::$name,)+];

        impl Status {
            /// The message Envoy sends as the body.
            pub fn message(self) -> &'static str {
                match self {
                    $(Status::$name => $text,)+
                }
            }
        }
    };
}

statuses! {
    JwtMissed => "Jwt is missing",
    JwtNotYetValid => "Jwt not yet valid",
    JwtExpired => "Jwt is expired",
    JwtBadFormat => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
    JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
    JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
    JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
    JwtHeaderBadKid => "Jwt header [kid] field is not a string",
    JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
    JwtEd25519SignatureWrongLength => "Jwt ED25519 signature is wrong length",
    JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
    JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
    JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
    JwtPayloadParseErrorIatNotInteger => "Jwt payload [iat] field is not an integer",
    JwtPayloadParseErrorIatOutOfRange => "Jwt payload [iat] field is not a positive 64 bit integer",
    JwtPayloadParseErrorNbfNotInteger => "Jwt payload [nbf] field is not an integer",
    JwtPayloadParseErrorNbfOutOfRange => "Jwt payload [nbf] field is not a positive 64 bit integer",
    JwtPayloadParseErrorExpNotInteger => "Jwt payload [exp] field is not an integer",
    JwtPayloadParseErrorExpOutOfRange => "Jwt payload [exp] field is not a positive 64 bit integer",
    JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
    JwtPayloadParseErrorAudNotString => "Jwt payload [aud] field is not a string or string list",
    JwtSignatureParseErrorBadBase64 => "Jwt signature is an invalid Base64url encoded",
    JwtUnknownIssuer => "Jwt issuer is not configured",
    JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
    JwtVerificationFail => "Jwt verification fails",
    JwksParseError => "Jwks is an invalid JSON",
    JwksNoKeys => "Jwks does not have [keys] field",
    JwksBadKeys => "[keys] in Jwks is not an array",
    JwksNoValidKeys => "Jwks doesn't have any valid public key",
    JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
    JwksFetchFail => "Jwks remote fetch is failed",
}

impl Status {
    /// Envoy's response code details: `jwt_authn_access_denied{<message>}`
    /// with spaces as underscores.
    pub fn details(self) -> &'static str {
        static DETAILS: OnceLock<Vec<&'static str>> = OnceLock::new();
        let all = DETAILS.get_or_init(|| {
            ALL.iter()
                .map(|s| {
                    let text = format!(
                        "jwt_authn_access_denied{{{}}}",
                        s.message().replace(' ', "_")
                    );
                    &*Box::leak(text.into_boxed_str())
                })
                .collect()
        });
        let i = ALL.iter().position(|s| *s == self).unwrap_or(0);
        all.get(i).copied().unwrap_or("jwt_authn_access_denied")
    }

    /// 403 for a token whose audience is not allowed, else 401.
    pub fn http_status(self) -> http::StatusCode {
        if self == Status::JwtAudienceNotAllowed {
            http::StatusCode::FORBIDDEN
        } else {
            http::StatusCode::UNAUTHORIZED
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_envoys() {
        assert_eq!(
            Status::JwtMissed.details(),
            "jwt_authn_access_denied{Jwt_is_missing}"
        );
        assert_eq!(
            Status::JwksFetchFail.details(),
            "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}"
        );
        assert_eq!(Status::JwtAudienceNotAllowed.http_status(), 403);
        assert_eq!(Status::JwtExpired.http_status(), 401);
    }
}
