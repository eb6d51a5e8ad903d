//! The connection manager's `x-forwarded-client-cert` (XFCC) policy:
//! `forward_client_cert_details` and `set_current_client_cert_details`.

/// `forward_client_cert_details`: what happens to a request's XFCC header.
/// On a connection without a client certificate every mode but
/// [`ForwardClientCert::AlwaysForwardOnly`] removes the header (Envoy's
/// `mutateXfccRequestHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCert {
    /// `SANITIZE` (default): the header is removed.
    #[default]
    Sanitize,
    /// `FORWARD_ONLY`: on mTLS connections the header is kept as sent.
    ForwardOnly,
    /// `APPEND_FORWARD`: on mTLS connections this hop's element is
    /// appended (`,`-separated) to the header as sent.
    AppendForward,
    /// `SANITIZE_SET`: on mTLS connections the header becomes this hop's
    /// element alone.
    SanitizeSet,
    /// `ALWAYS_FORWARD_ONLY`: the header is kept as sent, whatever the
    /// connection.
    AlwaysForwardOnly,
}

impl ForwardClientCert {
    /// True for the modes that add this hop's element (and so read
    /// [`ClientCertDetails`]).
    pub fn sets_current(self) -> bool {
        matches!(
            self,
            ForwardClientCert::AppendForward | ForwardClientCert::SanitizeSet
        )
    }
}

/// `set_current_client_cert_details`: the peer certificate's fields in this
/// hop's element besides `By` (the local certificate's URI SANs) and
/// `Hash` (SHA-256 of the peer certificate), which are always there.
/// Envoy writes them in the order `Cert`, `Chain`, `Subject`, `URI`, `DNS`
/// whatever the order of the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCertDetails {
    /// `Subject="<RFC 2253 subject>"`, present even when empty.
    pub subject: bool,
    /// `Cert="<URL-encoded PEM leaf>"`.
    pub cert: bool,
    /// `Chain="<URL-encoded PEM chain, leaf first>"`.
    pub chain: bool,
    /// `DNS=<name>` for each DNS SAN.
    pub dns: bool,
    /// `URI=<uri>` for each URI SAN (`URI=` when there is none).
    pub uri: bool,
}
