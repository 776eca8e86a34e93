"""Packaging for the declarative beamline framework.

Plugin groups (other distributions may add to any of them):
  happi.containers   happi container classes
  loader.plans       plan generator functions
  loader.callbacks   callback factories ``(beamline, **options) -> callable(s)``
  loader.setups      post-connect setup actions ``(device, **options)``
  intake.catalogs    databroker catalogs declared in ``catalogs/``
"""
from setuptools import find_packages, setup

setup(
    name="beamline-framework",
    version="0.1.0",
    description="A beamline declared in data: happi entries, YAML, simulated EPICS IOCs, Bluesky session",
    python_requires=">=3.10",
    packages=find_packages(include=["loader", "loader.*", "plans", "plans.*", "iocs", "iocs.*", "bench", "bench.*"]),
    include_package_data=True,
    install_requires=[
        "ophyd>=1.9,<2",
        "bluesky>=1.12,<2",
        "databroker>=1.2.5,<2",
        "intake>=0.6.4,<0.7",
        "happi>=2.4,<4",
        "apstools>=1.6.20,<2",
        "pyepics>=3.5.2,<4",
        "caproto>=1.1,<2",
        "epicscorelibs>=7.0.7,<8",
        "jsonschema>=4.17,<5",
        "h5py>=3.8,<4",
        "area-detector-handlers>=0.0.10,<0.1",
        "suitcase-msgpack>=0.3,<0.4",
        "numpy>=2,<3",
        "pyyaml>=6,<7",
        "matplotlib>=3.7,<4",
        "spec2nexus>=2021.2",
        "ipython>=8",
        "psutil>=5",
    ],
    extras_require={
        "test": ["pytest>=7,<10", "pytest-timeout>=2.1,<3"],
    },
    entry_points={
        "console_scripts": ["beamline = loader.cli:main"],
        "happi.containers": ["beamline = loader.containers"],
        "loader.setups": [
            "scaler_channels = loader.setups.scaler:scaler_channels",
            "motor_srev = loader.setups.motor:motor_srev",
            "lorentzian_swait = loader.setups.swait:lorentzian_swait",
            "temperature_swait = loader.setups.swait:temperature_swait",
            "enable_calcs = loader.setups.swait:enable_calcs",
            "ad_file_paths = loader.setups.area_detector:ad_file_paths",
            "ad_peak_simulation = loader.setups.area_detector:ad_peak_simulation",
        ],
        "loader.callbacks": [
            "catalog = loader.callbacks.catalog:catalog_writer",
            "spec = loader.callbacks.spec:spec_writer",
            "best_effort = loader.callbacks.best_effort:best_effort",
            "nexus = loader.callbacks.nexus:nexus_writer",
        ],
        "loader.plans": [
            "two_pass_scan = plans.peak_finding:two_pass_scan",
            "findpeak_multipass = plans.peak_finding:findpeak_multipass",
            "repeat_findpeak = plans.peak_finding:repeat_findpeak",
            "go_to_temperature = plans.temperature:go_to_temperature",
            "temperature_count = plans.temperature:temperature_count",
        ],
        "intake.catalogs": ["training = loader.catalogs:training"],
    },
)
