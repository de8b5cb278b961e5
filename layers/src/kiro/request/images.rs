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
    Ok(WireImage {
        format,
        source: ImageSource { bytes: data },
    })
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
