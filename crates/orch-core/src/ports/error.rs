//! The error shape shared by the outside-system ports, defined once by a macro.

/// What a server certificate the client refused means to the person reading the error; every
/// HTTPS adapter says it the same way.
pub const UNTRUSTED_CERTIFICATE_HINT: &str = "the server's certificate is not trusted: put the CA that signed it in tls.ca_file (PEM) or in the system's certificate store";

/// What kind of failure a port error is, for retry decisions and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    Conflict,
    /// Worth retrying: 429, 5xx, timeouts, resets.
    Unavailable {
        retry_after: Option<std::time::Duration>,
    },
    /// A credential is wrong; retrying will not help.
    Unauthorized,
    /// The request was refused for good (a 4xx other than the above).
    Invalid,
    Other,
}

impl ErrorClass {
    /// The service is out (down, overloaded, or refusing orch's credential): waiting for it
    /// to come back is all orch can do, and it never counts against a job.
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            ErrorClass::Unavailable { .. } | ErrorClass::Unauthorized
        )
    }

    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Unavailable { .. } | ErrorClass::Other)
    }
}

/// Defines a port error enum with the variants the core branches on, plus `Other`.
macro_rules! port_error {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            #[error("{}: not found: {}", $what, .0)]
            NotFound(String),
            #[error("{}: conflict: {}", $what, .0)]
            Conflict(String),
            #[error("{}: unavailable: {}", $what, .message)]
            Unavailable { message: String, retry_after: Option<std::time::Duration> },
            /// The message says which setting to fix.
            #[error("{}: unauthorized: {}", $what, .0)]
            Unauthorized(String),
            /// Refused for good (bad request, unprocessable, chat not found, …).
            #[error("{}: refused: {}", $what, .0)]
            Invalid(String),
            #[error("{}: {}", $what, .0)]
            Other(#[source] Box<dyn std::error::Error + Send + Sync>),
        }

        impl $name {
            pub fn unavailable(message: impl Into<String>) -> $name {
                $name::Unavailable { message: message.into(), retry_after: None }
            }

            pub fn other(message: impl Into<String>) -> $name {
                $name::Other(message.into().into())
            }

            pub fn class(&self) -> $crate::ports::ErrorClass {
                use $crate::ports::ErrorClass;
                match self {
                    $name::NotFound(_) => ErrorClass::NotFound,
                    $name::Conflict(_) => ErrorClass::Conflict,
                    $name::Unavailable { retry_after, .. } => ErrorClass::Unavailable { retry_after: *retry_after },
                    $name::Unauthorized(_) => ErrorClass::Unauthorized,
                    $name::Invalid(_) => ErrorClass::Invalid,
                    $name::Other(_) => ErrorClass::Other,
                }
            }
        }
    };
}

pub(crate) use port_error;
