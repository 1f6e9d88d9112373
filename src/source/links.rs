//! Share links made direct downloads, as FlexPrice does for file_url, and URLs with their
//! credentials taken out for messages and the store.

use reqwest::Url;

/// The direct-download form of a share link from Google Drive, Dropbox, GitHub or OneDrive;
/// any other URL as it is.
pub fn direct_download(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return text.to_owned();
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        // https://drive.google.com/file/d/<id>/view?usp=sharing, or open?id=<id>
        "drive.google.com" => {
            let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
            let id = match segments.as_slice() {
                ["file", "d", id, ..] => Some((*id).to_owned()),
                ["open"] | ["uc"] => url.query_pairs().find(|(k, _)| k == "id").map(|(_, v)| v.into_owned()),
                _ => None,
            };
            match id {
                Some(id) => format!("https://drive.google.com/uc?export=download&id={id}"),
                None => text.to_owned(),
            }
        }
        "www.dropbox.com" | "dropbox.com" => {
            set_query(&mut url, "dl", "1");
            url.to_string()
        }
        // https://github.com/<owner>/<repo>/blob/<ref>/<path>
        "github.com" => {
            let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
            match segments.as_slice() {
                [owner, repo, "blob", rest @ ..] if !rest.is_empty() => {
                    format!("https://raw.githubusercontent.com/{owner}/{repo}/{}", rest.join("/"))
                }
                _ => text.to_owned(),
            }
        }
        "onedrive.live.com" => {
            if url.path() == "/redir" {
                url.set_path("/download");
            } else {
                set_query(&mut url, "download", "1");
            }
            url.to_string()
        }
        "1drv.ms" => {
            set_query(&mut url, "download", "1");
            url.to_string()
        }
        _ if host.ends_with(".sharepoint.com") => {
            set_query(&mut url, "download", "1");
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// Sets one query parameter, keeping the others.
fn set_query(url: &mut Url, key: &str, value: &str) {
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (k, v) in &others {
        pairs.append_pair(k, v);
    }
    pairs.append_pair(key, value);
}

/// A URL without the user name and password it may carry.
pub fn redact(text: &str) -> String {
    crate::target::flexprice::client::redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_links_become_direct_downloads() {
        let cases = [
            (
                "https://drive.google.com/file/d/1AbC_dEf/view?usp=sharing",
                "https://drive.google.com/uc?export=download&id=1AbC_dEf",
            ),
            (
                "https://drive.google.com/open?id=1AbC",
                "https://drive.google.com/uc?export=download&id=1AbC",
            ),
            (
                "https://www.dropbox.com/s/abc/usage.csv?dl=0",
                "https://www.dropbox.com/s/abc/usage.csv?dl=1",
            ),
            (
                "https://www.dropbox.com/scl/fi/x/usage.csv?rlkey=k&dl=0",
                "https://www.dropbox.com/scl/fi/x/usage.csv?rlkey=k&dl=1",
            ),
            (
                "https://github.com/acme/data/blob/main/usage/2026-11.csv",
                "https://raw.githubusercontent.com/acme/data/main/usage/2026-11.csv",
            ),
            (
                "https://onedrive.live.com/redir?resid=ABC&authkey=x",
                "https://onedrive.live.com/download?resid=ABC&authkey=x",
            ),
            ("https://1drv.ms/u/s!AbCd", "https://1drv.ms/u/s!AbCd?download=1"),
            ("https://files.example.com/u.csv", "https://files.example.com/u.csv"),
        ];
        for (given, direct) in cases {
            assert_eq!(direct_download(given), direct, "{given}");
        }
    }
}
