"""ganforge: StyleGAN2-class GAN training, generation, metrics and kernels.

    pip install -e .            # development install
    pip install -e ".[test]"    # plus the test dependencies
"""

import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # setup_ext.py sits next to setup.py
import setup_ext  # noqa: E402  GANFORGE_BUILD_OPS=1 builds the CUDA extensions ahead of time; otherwise a no-op

PACKAGES = ('dnnlib', 'torch_utils', 'ops', 'training', 'metrics')
SCRIPTS = ['train', 'generate', 'calc_metrics', 'dataset_tool', 'bench_ops', 'setup_ext', 'projector', 'style_mixing', 'gen_video']

setup(
    name='ganforge',
    version='0.1.0',
    description='StyleGAN2-class GAN training, generation, metrics and custom CUDA kernels',
    long_description=open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=[p for pkg in PACKAGES for p in (pkg, pkg + '.*')]),
    py_modules=SCRIPTS,
    package_data={'ops': ['csrc/*.h', 'csrc/*.cpp', 'csrc/*.cu', 'csrc/*.cuh']},
    include_package_data=True,
    install_requires=[
        'torch>=2.1',
        'numpy>=1.22',
        'scipy>=1.8',          # FID matrix square root
        'click>=8.0',
        'pillow>=9.0',
        'ninja>=1.10',         # JIT build of the CUDA extensions
        'tensorboard>=2.10',
        'pyspng>=0.1.1; platform_system != "Windows"',
    ],
    extras_require={
        'test': ['pytest>=7', 'pytest-timeout>=2.1'],
        'video': ['imageio>=2.20', 'imageio-ffmpeg>=0.4'],
    },
    ext_modules=setup_ext.get_ext_modules(),
    cmdclass=setup_ext.get_cmdclass(),
    entry_points={'console_scripts': [f'ganforge-{s.replace("_", "-")}={s}:main' for s in SCRIPTS]},
)
