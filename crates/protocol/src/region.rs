//! Regions (PROTOCOL.md section 1): a region is named by its domain; users may give its
//! name (`us-east-1`, `us_east_1`) or the domain itself.

/// Every region name with its domain.
pub const REGIONS: [(&str, &str); 17] = [
    ("us-east-1", "mypurecloud.com"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("eu-central-1", "mypurecloud.de"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
    ("ap-southeast-2", "mypurecloud.com.au"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
];

/// The domain for a region given by name (either separator, any case) or by domain.
pub fn domain_for(region: &str) -> Option<&'static str> {
    let wanted = region.trim().to_ascii_lowercase().replace('_', "-");
    let wanted = wanted.trim_end_matches('.');
    REGIONS
        .iter()
        .find(|(name, domain)| *name == wanted || *domain == wanted)
        .map(|(_, domain)| *domain)
}

/// The API host URL of a domain (`https://api.<domain>`).
pub fn api_base(domain: &str) -> String {
    format!("https://api.{domain}")
}

/// The login host URL of a domain (`https://login.<domain>`).
pub fn login_base(domain: &str) -> String {
    format!("https://login.{domain}")
}

/// The assist stream URL of a domain.
pub fn assist_stream_url(domain: &str) -> String {
    format!("wss://api.{domain}{}", crate::assist::STREAM_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains_resolve() {
        assert_eq!(domain_for("us-east-1"), Some("mypurecloud.com"));
        assert_eq!(domain_for("US_EAST_1"), Some("mypurecloud.com"));
        assert_eq!(domain_for("mypurecloud.ie"), Some("mypurecloud.ie"));
        assert_eq!(domain_for("ap_northeast_3"), Some("apne3.pure.cloud"));
        assert_eq!(domain_for("mars-1"), None);
    }
}
