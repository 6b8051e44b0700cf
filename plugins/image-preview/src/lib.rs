//! `image-preview`: PNG, JPEG, GIF and WebP images to a PNG thumbnail no
//! larger than `max_dimension` on its longer side, aspect ratio kept.
//!
//! Decompression bombs are refused from the header alone: an image whose
//! declared pixel count exceeds `max_pixels` is declined before any pixel
//! is decoded, and the decoder itself runs under matching limits. Corrupt
//! images are declined too; neither traps.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use pd2_plugin_sdk::{
    Content, FileInfo, Hook, Manifest, Plugin, Preview, log, settings_or_default,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Longest side of the thumbnail, in pixels.
    pub max_dimension: u32,
    /// Images declaring more pixels are declined (decoding them would need
    /// 4 bytes per pixel of the plugin's memory).
    pub max_pixels: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_dimension: 512,
            max_pixels: 10_000_000,
        }
    }
}

const FORMATS: [ImageFormat; 4] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Gif,
    ImageFormat::WebP,
];

fn reader(data: &[u8]) -> Option<ImageReader<Cursor<&[u8]>>> {
    let reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()?;
    reader
        .format()
        .is_some_and(|f| FORMATS.contains(&f))
        .then_some(reader)
}

/// The thumbnail as PNG bytes, or why there is none.
pub fn thumbnail(data: &[u8], s: &Settings) -> Result<Vec<u8>, String> {
    let (width, height) = reader(data)
        .ok_or("not a PNG, JPEG, GIF or WebP image")?
        .into_dimensions()
        .map_err(|e| format!("unreadable image header: {e}"))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > s.max_pixels {
        return Err(format!(
            "{width}×{height} is {pixels} pixels, over max_pixels ({})",
            s.max_pixels
        ));
    }
    let mut reader = reader(data).ok_or("image vanished")?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(s.max_pixels.saturating_mul(4).saturating_add(1 << 20));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    let side = s.max_dimension.max(1);
    let image = if width > side || height > side {
        image.thumbnail(side, side)
    } else {
        image
    };
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, ImageFormat::Png)
        .map_err(|e| format!("cannot encode the thumbnail: {e}"))?;
    Ok(png.into_inner())
}

pub struct ImagePreview;

impl Plugin for ImagePreview {
    fn manifest() -> Manifest {
        Manifest::new("image-preview", env!("CARGO_PKG_VERSION"))
            .description("PNG, JPEG, GIF and WebP to a bounded PNG thumbnail")
            .hook(Hook::Render)
            .mime_types(["image/png", "image/jpeg", "image/gif", "image/webp"])
    }

    fn render(info: &FileInfo, content: &dyn Content) -> Option<Preview> {
        let s: Settings = settings_or_default();
        match thumbnail(&content.read_all(), &s) {
            Ok(png) => Some(Preview::new("image/png", png)),
            Err(reason) => {
                log::info(&format!("no preview for {}: {reason}", info.path));
                None
            }
        }
    }
}

pd2_plugin_sdk::export_plugin!(ImagePreview);

#[cfg(test)]
mod tests {
    use image::{DynamicImage, ImageFormat, RgbImage};
    use pd2_plugin_sdk::{Plugin, testing};

    use super::*;

    fn encode(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let img = DynamicImage::ImageRgb8(img);
        let img = if format == ImageFormat::Gif {
            DynamicImage::ImageRgba8(img.to_rgba8())
        } else {
            img
        };
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn render(path: &str, mime: &str, data: Vec<u8>) -> Option<(u32, u32)> {
        let (info, file) = testing::file(path, mime, data);
        let preview = ImagePreview::render(&info, &file)?;
        assert_eq!(preview.content_type, "image/png");
        let thumb = image::load_from_memory_with_format(&preview.body, ImageFormat::Png).unwrap();
        Some((thumb.width(), thumb.height()))
    }

    #[test]
    fn every_format_becomes_a_bounded_png_keeping_aspect() {
        for (format, mime) in [
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Gif, "image/gif"),
            (ImageFormat::WebP, "image/webp"),
        ] {
            let size = render("photo", mime, encode(1200, 600, format));
            assert_eq!(size, Some((512, 256)), "{mime}");
        }
    }

    #[test]
    fn small_images_keep_their_size_and_settings_apply() {
        assert_eq!(
            render("a.png", "image/png", encode(40, 30, ImageFormat::Png)),
            Some((40, 30))
        );
        testing::set_settings(serde_json::json!({"max_dimension": 100}));
        assert_eq!(
            render("a.png", "image/png", encode(300, 600, ImageFormat::Png)),
            Some((50, 100))
        );
        testing::set_settings(serde_json::json!({}));
    }

    #[test]
    fn empty_corrupt_and_foreign_files_are_declined() {
        assert_eq!(render("e.png", "image/png", Vec::new()), None);
        let mut corrupt = encode(64, 64, ImageFormat::Png);
        corrupt.truncate(60);
        assert_eq!(render("c.png", "image/png", corrupt), None);
        let mut garbage = b"\x89PNG\r\n\x1a\n".to_vec();
        garbage.extend([0x55u8; 200]);
        assert_eq!(render("g.png", "image/png", garbage), None);
        assert_eq!(render("t.png", "image/png", b"just text".to_vec()), None);
    }

    /// A PNG whose header claims 100,000 × 100,000 pixels (10 G pixels).
    #[test]
    fn decompression_bombs_are_declined_from_the_header() {
        let mut bomb = encode(8, 8, ImageFormat::Png);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = thumbnail(&bomb, &Settings::default()).unwrap_err();
        assert!(err.contains("max_pixels"), "{err}");
        assert_eq!(render("bomb.png", "image/png", bomb), None);
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
