//! The reward curve, as SVG and PNG (plotters; its text drawn with a TrueType font read
//! at run time, so no system library is needed — without one, the curve is drawn bare).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// Where a sans-serif TrueType font is usually found (`KT_PLOT_FONT` first).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the first font found as plotters' `sans-serif`; false when there is none.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let from_env = std::env::var("KT_PLOT_FONT").ok();
        let candidates = from_env
            .iter()
            .map(String::as_str)
            .chain(FONTS.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps the font for the life of the program.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn draw<B: DrawingBackend>(
    root: DrawingArea<B, plotters::coord::Shift>,
    rewards: &[f32],
    title: &str,
) -> Result<(), String>
where
    B::ErrorType: 'static,
{
    let error = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(error)?;
    let text = register_font();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = builder
        .build_cartesian_2d(0usize..rewards.len().max(1), 0f32..1f32)
        .map_err(error)?;
    if text {
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("mean reward")
            .draw()
            .map_err(error)?;
    }
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            rewards.iter().enumerate().map(|(i, r)| (i, *r)),
            blue.stroke_width(2),
        ))
        .map_err(error)?;
    root.present().map_err(error)
}

/// Writes the curve of `rewards` (one per iteration) to `<stem>.svg` and `<stem>.png`;
/// returns their paths.
pub fn save(rewards: &[f32], stem: &Path, title: &str) -> Result<Vec<PathBuf>, String> {
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw(
        SVGBackend::new(&svg, (800, 480)).into_drawing_area(),
        rewards,
        title,
    )?;
    draw(
        BitMapBackend::new(&png, (800, 480)).into_drawing_area(),
        rewards,
        title,
    )?;
    Ok(vec![svg, png])
}
