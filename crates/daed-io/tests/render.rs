//! Plots and grids produce PNG files that decode to the right size.

mod common;
use common::{shared_data, temp_dir};
use daed_io::grid::{grid_image, save_grid_png, save_grids_side_by_side};
use daed_io::images::ImageSet;
use daed_io::plot::{nice_ticks, Figure, Panel, Series};

fn demo_figure() -> Figure {
    let xs: Vec<f64> = (0..=50).map(|i| i as f64 * 200.0).collect();
    let loss: Vec<f64> = xs
        .iter()
        .map(|x| 0.05 + 0.9 * (-x / 2500.0).exp())
        .collect();
    let lo: Vec<f64> = loss.iter().map(|y| y * 0.85).collect();
    let hi: Vec<f64> = loss.iter().map(|y| y * 1.15).collect();
    let loss2: Vec<f64> = xs
        .iter()
        .map(|x| 0.08 + 0.7 * (-x / 4000.0).exp())
        .collect();
    let mut left = Panel::new("Training loss", "step", "loss (log)")
        .with(Series::new("DDPM eps", xs.clone(), loss).with_band(lo, hi))
        .with(Series::new("flow matching", xs.clone(), loss2));
    left.log_y = true;
    let fid: Vec<f64> = [1, 2, 5, 10, 20, 50, 100]
        .iter()
        .map(|&s| s as f64)
        .collect();
    let a: Vec<f64> = fid.iter().map(|s| 12.0 + 150.0 / s).collect();
    let b: Vec<f64> = fid.iter().map(|s| 15.0 + 60.0 / s.powf(0.7)).collect();
    let mut right = Panel::new("FID vs sampling steps", "steps", "FID")
        .with(Series::new("DDIM", fid.clone(), a))
        .with(Series::new("DPM-Solver++ (2M)", fid, b))
        .with(Series::new("single point", vec![60.0], vec![100.0]));
    right.hlines = vec![20.0];
    Figure::new(vec![left, right])
}

#[test]
fn plot_png_decodes_with_right_size() {
    let d = temp_dir("plot");
    let fig = demo_figure();
    let p = d.join("plots/fig.png");
    fig.save_png(&p).unwrap();
    let img = image::open(&p).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1280, 440));
    // Something other than white was drawn in each panel, and a series colour appears.
    let blue = img.pixels().filter(|px| px.0 == [31, 119, 180]).count();
    assert!(blue > 100, "series colour drawn ({blue} px)");
    if let Ok(keep) = std::env::var("DAED_KEEP_PLOT") {
        fig.save_png(keep).unwrap();
    }
    let small = Figure {
        width: 300,
        height: 200,
        ..Figure::new(vec![Panel::new("t", "x", "y")])
    };
    small.save_png(d.join("small.png")).unwrap();
    assert_eq!(
        image::image_dimensions(d.join("small.png")).unwrap(),
        (300, 200)
    );
    let bad = Panel::new("bad", "", "").with(Series::new("s", vec![1.0, 2.0], vec![1.0]));
    assert!(Figure::new(vec![bad]).save_png(d.join("bad.png")).is_err());
}

#[test]
fn ticks_are_nice() {
    assert_eq!(
        nice_ticks(0.0, 10.0, 5),
        vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    );
    let t = nice_ticks(0.13, 0.91, 5);
    assert!(t.len() >= 4 && t.len() <= 7, "{t:?}");
}

#[test]
fn grid_png_sizes() {
    let d = temp_dir("grid");
    let set = ImageSet::new(
        1,
        28,
        28,
        (0..10 * 784).map(|i| (i % 251) as u8).collect(),
        None,
    )
    .unwrap();
    let p = d.join("g.png");
    save_grid_png(&p, &set, 4, 2).unwrap();
    // 4 columns x 3 rows of 28 px with 2 px padding around and between.
    assert_eq!(
        image::image_dimensions(&p).unwrap(),
        (2 + 4 * 30, 2 + 3 * 30)
    );
    let g = grid_image(&set, 4, 2).unwrap();
    assert_eq!(&g.pixels[..3], &[255, 255, 255], "padding is white");
    let first = (2 * g.width + 2) * 3;
    assert_eq!(
        &g.pixels[first..first + 3],
        &[0, 0, 0],
        "first pixel of image 0"
    );
    let rgb = set.to_channels(3).unwrap();
    save_grids_side_by_side(
        d.join("sbs.png"),
        &[("model A", &set), ("model B", &rgb)],
        5,
    )
    .unwrap();
    let (w, h) = image::image_dimensions(d.join("sbs.png")).unwrap();
    assert!(w > 2 * (2 + 5 * 30) && h > 2 + 2 * 30, "{w}x{h}");
    assert!(save_grid_png(d.join("e.png"), &set.take(0), 4, 2).is_err());
}

#[test]
fn grid_of_real_images() {
    let Some(data) = shared_data() else { return };
    let d = temp_dir("grid-real");
    let set = daed_io::datasets::load_demo().unwrap().take(16);
    let cifar =
        daed_io::cifar::read_cifar10(&[data.join("cifar10-first4000/data_batch_1_first4000.bin")])
            .unwrap();
    let p = d.join("cmp.png");
    save_grids_side_by_side(
        &p,
        &[
            ("fashion-mnist", &set.resize(32, 32).to_channels(3).unwrap()),
            ("cifar10", &cifar.take(16)),
        ],
        4,
    )
    .unwrap();
    assert!(image::open(&p).is_ok());
    if let Ok(keep) = std::env::var("DAED_KEEP_GRID") {
        std::fs::copy(&p, keep).unwrap();
    }
}
