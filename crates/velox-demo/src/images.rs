//! Generated images: a large colourful JPEG hero, four JPEG photos and a PNG diagram.
//! Each is encoded on first request (off the async workers) and kept in a `OnceLock`.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, ETAG, LAST_MODIFIED};
use http::{Response, StatusCode};

use crate::resp::{self, Body, Rng};

/// One encoded image.
pub(crate) struct Image {
    bytes: Bytes,
    etag: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Hero,
    Photo(u32),
    Diagram,
}

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        match name {
            "hero.jpg" => Some(Kind::Hero),
            "diagram.png" => Some(Kind::Diagram),
            _ => {
                let n: u32 = name
                    .strip_prefix("photo-")?
                    .strip_suffix(".jpg")?
                    .parse()
                    .ok()?;
                (1..=4).contains(&n).then_some(Kind::Photo(n))
            }
        }
    }

    fn slot(self) -> &'static OnceLock<Image> {
        static HERO: OnceLock<Image> = OnceLock::new();
        static DIAGRAM: OnceLock<Image> = OnceLock::new();
        static PHOTOS: [OnceLock<Image>; 4] = [const { OnceLock::new() }; 4];
        match self {
            Kind::Hero => &HERO,
            Kind::Diagram => &DIAGRAM,
            Kind::Photo(n) => &PHOTOS[(n as usize - 1) % 4],
        }
    }

    fn generate(self) -> Image {
        let bytes = match self {
            Kind::Hero => jpeg(1600, 900, 1),
            Kind::Photo(n) => jpeg(1200, 800, 100 + n),
            Kind::Diagram => diagram_png(1000, 700),
        };
        Image {
            etag: resp::etag_of(&bytes),
            bytes: Bytes::from(bytes),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Diagram => "image/png",
            _ => "image/jpeg",
        }
    }

    /// Deliberately uneven caching: the hero and two photos get a max-age, the rest only
    /// validators.
    fn cache_control(self) -> Option<&'static str> {
        match self {
            Kind::Hero => Some("public, max-age=86400"),
            Kind::Photo(1) | Kind::Photo(2) => Some("max-age=3600"),
            _ => None,
        }
    }
}

/// `/images/{name}`.
pub(crate) async fn image(name: &str) -> Response<Body> {
    let Some(kind) = Kind::from_name(name) else {
        return resp::not_found();
    };
    let slot = kind.slot();
    let img = match slot.get() {
        Some(img) => img,
        None => {
            match tokio::task::spawn_blocking(move || slot.get_or_init(|| kind.generate())).await {
                Ok(img) => img,
                Err(_) => return resp::internal_error(),
            }
        }
    };
    let mut r = resp::bytes_response(StatusCode::OK, kind.content_type(), img.bytes.clone());
    resp::set(&mut r, ETAG, resp::hv(img.etag.clone()));
    resp::set(&mut r, LAST_MODIFIED, resp::http_date(5));
    if let Some(cc) = kind.cache_control() {
        resp::set(&mut r, CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    r
}

/// A colourful generated picture: sine gradients, soft discs, diagonal bands and grain.
fn scene(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut rng = Rng::new(u64::from(seed));
    let phase = (seed % 17) as f32 * 0.37;
    let discs: Vec<(f32, f32, f32, [f32; 3])> = (0..9)
        .map(|_| {
            let cx = rng.below(u64::from(w)) as f32;
            let cy = rng.below(u64::from(h)) as f32;
            let r = (40 + rng.below(u64::from(h / 3))) as f32;
            let c = [
                rng.below(256) as f32,
                rng.below(256) as f32,
                rng.below(256) as f32,
            ];
            (cx, cy, r, c)
        })
        .collect();
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    let (wf, hf) = (w as f32, h as f32);
    for y in 0..h {
        let fy = y as f32 / hf;
        let gy = (fy * 5.1 + phase).sin();
        for x in 0..w {
            let fx = x as f32 / wf;
            let mut px = [
                128.0 + 120.0 * (fx * 6.3 + phase).sin(),
                128.0 + 120.0 * gy,
                128.0 + 120.0 * ((fx + fy) * 4.2 + phase * 2.0).cos(),
            ];
            for &(cx, cy, r, c) in &discs {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                let d2 = dx * dx + dy * dy;
                if d2 < r * r {
                    let t = 1.0 - d2 / (r * r);
                    let a = 0.75 * t.sqrt();
                    for k in 0..3 {
                        px[k] = px[k] * (1.0 - a) + c[k] * a;
                    }
                }
            }
            let band = if ((x + y) / 48) % 2 == 0 { 1.08 } else { 0.94 };
            let grain = rng.next_u64();
            for (k, v) in px.iter().enumerate() {
                let noise = ((grain >> (k * 8)) & 0x07) as f32 - 4.0;
                out.push((v * band + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

fn jpeg(w: u16, h: u16, seed: u32) -> Vec<u8> {
    let pixels = scene(u32::from(w), u32::from(h), seed);
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    if let Err(e) = encoder.encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb) {
        tracing::error!(error = %e, "jpeg encoding failed");
    }
    out
}

/// A "diagram": light grid, shaded boxes, connectors and a plotted curve on a faint
/// gradient (RGBA, so it is large the way unoptimised PNGs are).
fn diagram_png(w: u32, h: u32) -> Vec<u8> {
    let mut px = vec![0u8; (w * h * 4) as usize];
    let put = |px: &mut Vec<u8>, x: u32, y: u32, c: [u8; 3]| {
        if x < w && y < h {
            let i = ((y * w + x) * 4) as usize;
            px[i..i + 4].copy_from_slice(&[c[0], c[1], c[2], 255]);
        }
    };
    // Faint paper grain: this is what makes unoptimised diagrams heavy.
    let mut rng = Rng::new(77);
    for y in 0..h {
        for x in 0..w {
            let g = 230 + ((x + y) / 64 % 20) as u8 + (rng.next_u64() & 3) as u8;
            let c = if x % 25 == 0 || y % 25 == 0 {
                [205, 210, 220]
            } else {
                [g, g, 250]
            };
            put(&mut px, x, y, c);
        }
    }
    let boxes = [
        (60, 80, 220, 120, [66, 133, 244]),
        (390, 80, 220, 120, [52, 168, 83]),
        (720, 80, 220, 120, [251, 188, 5]),
        (225, 330, 220, 120, [234, 67, 53]),
        (555, 330, 220, 120, [155, 89, 182]),
    ];
    for &(bx, by, bw, bh, c) in &boxes {
        for y in by..by + bh {
            for x in bx..bx + bw {
                let shade = (y - by) as f32 / bh as f32;
                let f = 1.0 - 0.35 * shade;
                let edge = x < bx + 3 || x >= bx + bw - 3 || y < by + 3 || y >= by + bh - 3;
                let col = if edge {
                    [30, 30, 40]
                } else {
                    [
                        (c[0] as f32 * f) as u8,
                        (c[1] as f32 * f) as u8,
                        (c[2] as f32 * f) as u8,
                    ]
                };
                put(&mut px, x, y, col);
            }
        }
    }
    // Connectors between box centres.
    let links = [(0usize, 1usize), (1, 2), (0, 3), (1, 3), (2, 4), (3, 4)];
    for &(a, b) in &links {
        let (ax, ay) = (boxes[a].0 + boxes[a].2 / 2, boxes[a].1 + boxes[a].3 / 2);
        let (bx, by) = (boxes[b].0 + boxes[b].2 / 2, boxes[b].1 + boxes[b].3 / 2);
        let steps = 1000;
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let x = ax as f32 + (bx as f32 - ax as f32) * t;
            let y = ay as f32 + (by as f32 - ay as f32) * t;
            for d in 0..3 {
                put(&mut px, x as u32 + d, y as u32, [40, 40, 60]);
            }
        }
    }
    // A plotted curve along the bottom.
    for x in 0..w {
        let fx = x as f32 / w as f32;
        let y = 600.0 + 60.0 * (fx * 12.0).sin() * (1.0 - fx * 0.5);
        for d in 0..4 {
            put(&mut px, x, y as u32 + d, [200, 40, 90]);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Balanced);
        let written = enc
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&px));
        if let Err(e) = written {
            tracing::error!(error = %e, "png encoding failed");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches!(Kind::from_name("hero.jpg"), Some(Kind::Hero)));
        assert!(matches!(
            Kind::from_name("photo-4.jpg"),
            Some(Kind::Photo(4))
        ));
        assert!(Kind::from_name("photo-0.jpg").is_none());
        assert!(Kind::from_name("photo-5.jpg").is_none());
        assert!(Kind::from_name("photo-.jpg").is_none());
        assert!(Kind::from_name("x.png").is_none());
    }

    #[test]
    fn encodes() {
        let hero = Kind::Hero.generate();
        assert_eq!(&hero.bytes[..2], &[0xFF, 0xD8]);
        let png = Kind::Diagram.generate();
        assert_eq!(&png.bytes[..8], b"\x89PNG\r\n\x1a\n");
        eprintln!(
            "hero {} bytes, diagram {} bytes",
            hero.bytes.len(),
            png.bytes.len()
        );
    }
}
