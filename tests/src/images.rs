//! Small encoders for the images tests and the bench upload (photos,
//! notebook plots): `png` and `jpeg-encoder` alone, not the `image` crate,
//! whose decoders and colour management took ~35 s of CPU of a fresh build.

/// An RGB PNG of `width` × `height` with the colour of each pixel, fast
/// compression and adaptive filters (as `image` wrote them: the bench's
/// inputs keep their sizes, a notebook plot ~115 KB).
pub fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Adaptive);
    let mut writer = encoder.write_header().expect("png header");
    writer
        .write_image_data(&rgb(width, height, pixel))
        .expect("png data");
    writer.finish().expect("png end");
    out
}

/// An RGB JPEG (quality 75, as a camera or an editor's default; colour
/// not subsampled, as `image` wrote it: the bench's 4 MP photo stays
/// ~130 KB) of `width` × `height` with the colour of each pixel.
pub fn jpeg(width: u16, height: u16, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 75);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    encoder
        .encode(
            &rgb(width.into(), height.into(), pixel),
            width,
            height,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("jpeg");
    out
}

fn rgb(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .flat_map(|(x, y)| pixel(x, y))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn images_carry_their_size() {
        let png = super::png(300, 200, |x, y| [x as u8, y as u8, 0]);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 300);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 200);

        let jpeg = super::jpeg(2560, 1600, |x, y| [x as u8, y as u8, 0]);
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        // The frame header (baseline SOF0): precision, height, width.
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame");
        let height = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
        let width = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
        assert_eq!((width, height), (2560, 1600));
    }
}
