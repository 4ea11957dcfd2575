//! The site's pages: home, articles, the stylesheet and the script. Caching headers are
//! deliberately weak and uneven so that the edge's work shows.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, ETAG, LAST_MODIFIED};
use http::{Response, StatusCode};

use crate::resp::{self, Body, Rng};

/// Number of articles (`/articles/1` ..= `/articles/6`).
pub const ARTICLES: u32 = 6;

pub(crate) const TITLES: [&str; ARTICLES as usize] = [
    "Chasing light over the northern fjords",
    "A week of street food in Osaka",
    "How a small bakery scaled to ten shops",
    "Night trains across the Alps",
    "Field notes on urban beekeeping",
    "Building a timber cabin by hand",
];

const WORDS: [&str; 48] = [
    "light",
    "river",
    "morning",
    "market",
    "stone",
    "harbour",
    "window",
    "garden",
    "bread",
    "mountain",
    "quiet",
    "station",
    "valley",
    "copper",
    "lantern",
    "season",
    "journey",
    "cedar",
    "winter",
    "festival",
    "courtyard",
    "tide",
    "orchard",
    "workshop",
    "signal",
    "meadow",
    "bridge",
    "storm",
    "coffee",
    "village",
    "hand",
    "timber",
    "ember",
    "salt",
    "glass",
    "path",
    "hill",
    "evening",
    "library",
    "ferry",
    "honey",
    "smoke",
    "canvas",
    "thread",
    "compass",
    "island",
    "clock",
    "harvest",
];

fn sentence(rng: &mut Rng) -> String {
    let n = 8 + rng.below(10) as usize;
    let mut s = String::new();
    for i in 0..n {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.extend(f.to_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            s.push(' ');
            s.push_str(w);
        }
    }
    s.push('.');
    s
}

fn paragraph(rng: &mut Rng) -> String {
    let n = 4 + rng.below(4);
    (0..n).map(|_| sentence(rng)).collect::<Vec<_>>().join(" ")
}

fn page(title: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} - Velox Demo Media</title>\n\
         <link rel=stylesheet href=/static/site.css>\n</head>\n<body>\n\
         <header class=\"site\"><a href=\"/\" class=\"brand\">Velox Demo Media</a>\n\
         <nav><a href=\"/\">Home</a> <a href=\"/hls/playlist.m3u8\">Video</a> \
         <a href=\"/download/big.bin\">Download</a></nav></header>\n\
         <main>\n{main}\n</main>\n\
         <aside id=\"recs\" class=\"recs\"></aside>\n\
         <footer><span id=\"clock\"></span> &middot; served by a deliberately slow origin</footer>\n\
         <script src=/static/app.js></script>\n</body>\n</html>\n"
    )
}

fn html(body: impl Into<Bytes>) -> Response<Body> {
    resp::bytes_response(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// `/`: links every article, shows images; no Cache-Control at all.
pub(crate) fn home() -> Response<Body> {
    static HOME: OnceLock<Bytes> = OnceLock::new();
    let body = HOME.get_or_init(|| {
        let mut rng = Rng::new(1);
        let mut main = String::from(
            "<section class=\"hero\"><img src=/images/hero.jpg alt=\"Hero\" width=1600 height=900>\
             <h1>Stories, photos and films from the road</h1></section>\n<ul class=\"cards\">\n",
        );
        for (i, title) in TITLES.iter().enumerate() {
            let id = i + 1;
            main.push_str(&format!(
                "<li class=\"card\"><a href=\"/articles/{id}\"><img src=/images/photo-{}.jpg \
                 alt=\"\" width=600 height=400><h2>{title}</h2></a><p>{}</p></li>\n",
                i % 4 + 1,
                sentence(&mut rng)
            ));
        }
        main.push_str(
            "</ul>\n<section><h2>How it works</h2><img src=/images/diagram.png alt=\"Diagram\" \
             width=1000 height=700></section>\n\
             <section><form action=\"/api/search\"><input name=q placeholder=\"Search\">\
             <button>Search</button></form></section>",
        );
        Bytes::from(page("Home", &main))
    });
    html(body.clone())
}

/// `/articles/{id}`: generated text and 2-3 images. Odd ids get `max-age=60`; ids 1, 4
/// and 5 carry Last-Modified; 2 and 6 have no caching headers at all.
pub(crate) fn article(id: u32) -> Response<Body> {
    static ARTICLE_PAGES: [OnceLock<Bytes>; ARTICLES as usize] =
        [const { OnceLock::new() }; ARTICLES as usize];
    if !(1..=ARTICLES).contains(&id) {
        return resp::not_found();
    }
    let body = ARTICLE_PAGES[(id - 1) as usize].get_or_init(|| {
        let title = TITLES[(id - 1) as usize];
        let mut rng = Rng::new(1000 + u64::from(id));
        let mut main = format!("<article>\n<h1>{title}</h1>\n");
        let images = [
            format!("/images/photo-{}.jpg", (id - 1) % 4 + 1),
            "/images/hero.jpg".to_owned(),
            "/images/diagram.png".to_owned(),
        ];
        let n_images = 2 + (id % 2) as usize;
        for p in 0..8 {
            main.push_str(&format!("<p>{}</p>\n", paragraph(&mut rng)));
            if let Some(img) = images.get(p).filter(|_| p < n_images) {
                main.push_str(&format!(
                    "<figure><img src={img} alt=\"\"><figcaption>{}</figcaption></figure>\n",
                    sentence(&mut rng)
                ));
            }
        }
        main.push_str("</article>");
        Bytes::from(page(title, &main))
    });
    let mut r = html(body.clone());
    if id % 2 == 1 {
        resp::set(
            &mut r,
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
    }
    if matches!(id, 1 | 4 | 5) {
        resp::set(&mut r, LAST_MODIFIED, resp::http_date(u64::from(id)));
    }
    r
}

fn css_text() -> String {
    let mut css = String::from(
        "/* Velox demo site stylesheet (deliberately unminified) */\n\
         :root {\n  --fg: #1d2330;\n  --bg: #fbfaf7;\n  --accent: #d2452c;\n  --muted: #6b7280;\n}\n\n\
         * {\n  box-sizing: border-box;\n}\n\n\
         body {\n  margin: 0;\n  font-family: Georgia, 'Times New Roman', serif;\n  color: var(--fg);\n  \
         background: var(--bg);\n  line-height: 1.6;\n}\n\n\
         header.site {\n  display: flex;\n  justify-content: space-between;\n  align-items: center;\n  \
         padding: 1rem 2rem;\n  border-bottom: 1px solid #e5e1d8;\n}\n\n\
         .brand {\n  font-weight: bold;\n  font-size: 1.3rem;\n  color: var(--accent);\n  \
         text-decoration: none;\n}\n\n\
         nav a {\n  margin-left: 1rem;\n  color: var(--fg);\n}\n\n\
         main {\n  max-width: 72rem;\n  margin: 0 auto;\n  padding: 2rem;\n}\n\n\
         .hero img, figure img {\n  width: 100%;\n  height: auto;\n  border-radius: 6px;\n}\n\n\
         .cards {\n  display: grid;\n  grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr));\n  \
         gap: 1.5rem;\n  list-style: none;\n  padding: 0;\n}\n\n\
         .card img {\n  width: 100%;\n  height: auto;\n}\n\n\
         .card h2 {\n  font-size: 1.2rem;\n  margin: 0.5rem 0;\n}\n\n\
         figcaption {\n  color: var(--muted);\n  font-style: italic;\n}\n\n\
         .recs {\n  max-width: 72rem;\n  margin: 0 auto;\n  padding: 0 2rem;\n}\n\n\
         footer {\n  padding: 2rem;\n  text-align: center;\n  color: var(--muted);\n}\n\n",
    );
    // Spacing utilities, the way CSS frameworks bloat stylesheets.
    for (name, prop) in [("m", "margin"), ("p", "padding")] {
        for (side, suffix) in [
            ("t", "-top"),
            ("b", "-bottom"),
            ("l", "-left"),
            ("r", "-right"),
        ] {
            for step in 0..6 {
                css.push_str(&format!(
                    ".{name}{side}-{step} {{\n  {prop}{suffix}: {}rem;\n}}\n\n",
                    f64::from(step) * 0.25
                ));
            }
        }
    }
    css
}

/// `/static/site.css`: a few KiB, `max-age=300` and an ETag.
pub(crate) fn css() -> Response<Body> {
    static CSS: OnceLock<(Bytes, String)> = OnceLock::new();
    let (body, etag) = CSS.get_or_init(|| {
        let text = css_text();
        let etag = resp::etag_of(text.as_bytes());
        (Bytes::from(text), etag)
    });
    let mut r = resp::bytes_response(StatusCode::OK, "text/css; charset=utf-8", body.clone());
    resp::set(
        &mut r,
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    resp::set(&mut r, ETAG, resp::hv(etag.clone()));
    r
}

const APP_JS: &str = r#"// Velox demo site script (deliberately unminified).
(function () {
  'use strict';

  function renderRecommendations(data) {
    var box = document.getElementById('recs');
    if (!box || !data || !data.items) {
      return;
    }
    var html = '<h2>Recommended for you</h2><ul>';
    data.items.forEach(function (item) {
      html += '<li><a href="' + item.url + '">' + item.title + '</a></li>';
    });
    box.innerHTML = html + '</ul>';
  }

  function loadRecommendations() {
    fetch('/api/recommendations?user=1')
      .then(function (response) { return response.json(); })
      .then(renderRecommendations)
      .catch(function (err) { console.warn('recommendations failed', err); });
  }

  function startClock() {
    var clock = document.getElementById('clock');
    if (!clock || !window.EventSource) {
      return;
    }
    var source = new EventSource('/events');
    source.onmessage = function (event) {
      try {
        var data = JSON.parse(event.data);
        clock.textContent = new Date(data.now).toLocaleTimeString() + ' (#' + data.n + ')';
      } catch (e) {
        console.warn('bad event', e);
      }
    };
  }

  document.addEventListener('DOMContentLoaded', function () {
    loadRecommendations();
    startClock();
  });
})();
"#;

/// `/static/app.js`: Last-Modified only, no Cache-Control.
pub(crate) fn app_js() -> Response<Body> {
    let mut r = resp::bytes_response(
        StatusCode::OK,
        "application/javascript; charset=utf-8",
        Bytes::from_static(APP_JS.as_bytes()),
    );
    resp::set(&mut r, LAST_MODIFIED, resp::http_date(3));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_is_a_few_kib() {
        let len = css_text().len();
        assert!((2048..16384).contains(&len), "{len}");
    }
}
