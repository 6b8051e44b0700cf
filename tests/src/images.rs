//! Small encoders for the images tests and the bench upload (photos,
//! notebook plots): `png` and `jpeg-encoder` alone, not the `image` crate,
//! whose decoders and colour management took ~35 s of CPU of a fresh build.

/// An RGB PNG of `width` × `height` with the colour of each pixel.
pub fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    writer
        .write_image_data(&rgb(width, height, pixel))
        .expect("png data");
    writer.finish().expect("png end");
    out
}

/// An RGB JPEG (quality 75, as a camera or an editor's default) of `width`
/// × `height` with the colour of each pixel.
pub fn jpeg(width: u16, height: u16, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 75)
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
