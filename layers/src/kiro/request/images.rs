//! Canonical images -> Kiro `images[]` entries (kiro-protocol.md §2.2).
//!
//! Kiro wants `{"format": "png", "source": {"bytes": "<base64>"}}` where `format` is the subtype
//! of the media type. The formats are the four Bedrock/Converse accepts; anything else would be
//! rejected upstream with an opaque "Improperly formed request", so it is refused here with a
//! message naming the field.

use crate::chat::Image;
use crate::error::GatewayError;

use super::wire::{ImageSource, WireImage};

/// Converts one image. `field` names it in client terms (`messages[2].content[0]`) for errors.
pub(crate) fn convert_image<'a>(
    image: &'a Image,
    field: &dyn Fn() -> String,
) -> Result<WireImage<'a>, GatewayError> {
    let (media_type, data) = match image.data.strip_prefix("data:") {
        // Dialect parsers should already strip `data:` URLs; accept them anyway. The type inside
        // the URL describes the bytes, so it wins over a declared one.
        Some(url) => {
            let (header, payload) = url.split_once(',').ok_or_else(|| {
                invalid(field(), "is a `data:` URL without a `,` before the payload")
            })?;
            let (url_type, encoding) = header.split_once(';').unwrap_or((header, ""));
            if !encoding.eq_ignore_ascii_case("base64") {
                return Err(invalid(
                    field(),
                    "is a `data:` URL that is not base64-encoded",
                ));
            }
            let media_type = if url_type.is_empty() {
                image.media_type.as_str()
            } else {
                url_type
            };
            (media_type, payload)
        }
        None => (image.media_type.as_str(), image.data.as_str()),
    };
    let format = image_format(media_type).ok_or_else(|| {
        invalid(
            field(),
            &format!(
                "has media type `{media_type}`; supported are image/png, image/jpeg, image/gif \
                 and image/webp"
            ),
        )
    })?;
    let data = data.trim();
    if data.is_empty() {
        return Err(invalid(field(), "has no image data"));
    }
    // Kiro refuses undecodable image bytes with a bare "Improperly formed request." (found by
    // the `convert` fuzz target); say what is wrong instead.
    if !is_base64(data) {
        return Err(invalid(field(), "is not valid base64 image data"));
    }
    Ok(WireImage {
        format,
        source: ImageSource { bytes: data },
    })
}

/// True when `data` is padded standard base64 (checked without decoding into a copy).
fn is_base64(data: &str) -> bool {
    let bytes = data.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    if padding > 2 {
        return false;
    }
    let body = &bytes[..bytes.len() - padding];
    if !body
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    {
        return false;
    }
    // The last character before padding must not carry bits the padding says are absent.
    let Some(last) = body.last() else {
        return padding == 0;
    };
    let value = match last {
        b'A'..=b'Z' => last - b'A',
        b'a'..=b'z' => last - b'a' + 26,
        b'0'..=b'9' => last - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    match padding {
        1 => value & 0b11 == 0,
        2 => value & 0b1111 == 0,
        _ => true,
    }
}

/// `image/jpeg` -> `jpeg`; `None` for anything Kiro cannot take.
fn image_format(media_type: &str) -> Option<&'static str> {
    let media_type = media_type.trim();
    let (kind, subtype) = media_type.split_once('/')?;
    if !kind.eq_ignore_ascii_case("image") {
        return None;
    }
    // Parameters (`image/png; charset=...`) are not part of the subtype.
    let subtype = subtype.split(';').next().unwrap_or_default().trim();
    ["png", "jpeg", "gif", "webp"]
        .into_iter()
        .find(|known| subtype.eq_ignore_ascii_case(known))
        .or_else(|| subtype.eq_ignore_ascii_case("jpg").then_some("jpeg"))
}

fn invalid(field: String, problem: &str) -> GatewayError {
    GatewayError::invalid_request(format!("{field} {problem}")).with_param(field)
}

#[cfg(test)]
mod base64_tests {
    use base64::Engine as _;

    use super::is_base64;

    #[test]
    fn agrees_with_the_decoder() {
        let samples = [
            "",
            "QQ==",
            "QR==",
            "QUI=",
            "QUJ=",
            "QUJD",
            "QUJD====",
            "QU",
            "Q===",
            "QUJD\n",
            "iVBORw0KGgo=",
            "iVBORwqqq0KGgo=",
            "a+b/",
            "a-b_",
            "====",
        ];
        for sample in samples {
            let decodes = base64::engine::general_purpose::STANDARD
                .decode(sample)
                .is_ok();
            assert_eq!(is_base64(sample), decodes, "{sample:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(media_type: &str, data: &str) -> Image {
        Image {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        }
    }

    fn field() -> String {
        "messages[0].content[1]".to_owned()
    }

    #[test]
    fn format_is_the_media_subtype() {
        let img = image("image/jpeg", "QUJD");
        let wire = convert_image(&img, &field).unwrap();
        assert_eq!(wire.format, "jpeg");
        assert_eq!(wire.source.bytes, "QUJD");
        assert_eq!(
            convert_image(&image("IMAGE/PNG", "QQ=="), &field)
                .unwrap()
                .format,
            "png"
        );
        assert_eq!(
            convert_image(&image("image/jpg", "QQ=="), &field)
                .unwrap()
                .format,
            "jpeg"
        );
    }

    #[test]
    fn data_url_prefix_is_stripped_and_its_type_used() {
        let img = image("", "data:image/webp;base64,UklGRg==");
        let wire = convert_image(&img, &field).unwrap();
        assert_eq!(wire.format, "webp");
        assert_eq!(wire.source.bytes, "UklGRg==");
    }

    #[test]
    fn unsupported_type_is_a_client_error_naming_the_field() {
        let err = convert_image(&image("image/tiff", "QQ=="), &field).unwrap_err();
        assert!(err.is_client_error());
        assert!(
            err.message().contains("messages[0].content[1]"),
            "{}",
            err.message()
        );
        assert!(err.message().contains("image/tiff"));
        let err = convert_image(&image("application/pdf", "QQ=="), &field).unwrap_err();
        assert!(err.message().contains("application/pdf"));
    }

    #[test]
    fn empty_or_non_base64_data_is_refused() {
        assert!(convert_image(&image("image/png", ""), &field).is_err());
        assert!(convert_image(&image("", "data:image/png,rawbytes"), &field).is_err());
        assert!(convert_image(&image("", "data:image/png;base64"), &field).is_err());
    }
}
