"""WGS84 latitude/longitude <-> UTM: Krüger's Transverse Mercator series to order n^6 (Karney 2011).

Accurate to well below a millimetre within a UTM zone (and far beyond it); zones follow the
standard 6-degree grid with the Norway (32V) and Svalbard (31X/33X/35X/37X) exceptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "UTM_MAX_LATITUDE",
    "UTM_MIN_LATITUDE",
    "UtmCoordinate",
    "latitude_band",
    "utm_to_wgs84",
    "utm_zone",
    "wgs84_to_utm",
]

WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
K0 = 0.9996
FALSE_EASTING = 500_000.0
FALSE_NORTHING_SOUTH = 10_000_000.0
UTM_MIN_LATITUDE = -80.0
UTM_MAX_LATITUDE = 84.0
_BANDS = "CDEFGHJKLMNPQRSTUVWX"

_N = WGS84_F / (2.0 - WGS84_F)
_E = math.sqrt(WGS84_F * (2.0 - WGS84_F))  # first eccentricity
_A = WGS84_A / (1.0 + _N) * (1.0 + _N**2 / 4.0 + _N**4 / 64.0 + _N**6 / 256.0)  # rectifying radius


def _series(coeffs: tuple[tuple[float, ...], ...]) -> tuple[float, ...]:
    """Evaluate polynomials in n whose coefficient tuples start at n^1."""
    return tuple(sum(c * _N ** (k + 1) for k, c in enumerate(row)) for row in coeffs)


_ALPHA = _series((
    (1 / 2, -2 / 3, 5 / 16, 41 / 180, -127 / 288, 7891 / 37800),
    (0, 13 / 48, -3 / 5, 557 / 1440, 281 / 630, -1983433 / 1935360),
    (0, 0, 61 / 240, -103 / 140, 15061 / 26880, 167603 / 181440),
    (0, 0, 0, 49561 / 161280, -179 / 168, 6601661 / 7257600),
    (0, 0, 0, 0, 34729 / 80640, -3418889 / 1995840),
    (0, 0, 0, 0, 0, 212378941 / 319334400),
))
_BETA = _series((
    (1 / 2, -2 / 3, 37 / 96, -1 / 360, -81 / 512, 96199 / 604800),
    (0, 1 / 48, 1 / 15, -437 / 1440, 46 / 105, -1118711 / 3870720),
    (0, 0, 17 / 480, -37 / 840, -209 / 4480, 5569 / 90720),
    (0, 0, 0, 4397 / 161280, -11 / 504, -830251 / 7257600),
    (0, 0, 0, 0, 4583 / 161280, -108847 / 3991680),
    (0, 0, 0, 0, 0, 20648693 / 638668800),
))


@dataclass(frozen=True)
class UtmCoordinate:
    """A UTM position: easting/northing (m), zone number 1-60 and latitude band letter."""

    easting: float
    northing: float
    zone_number: int
    band: str

    @property
    def northern(self) -> bool:
        return self.band >= "N"

    @property
    def zone(self) -> str:
        """Zone with band letter, e.g. '32U' (the form GeoPosition.zone uses)."""
        return f"{self.zone_number}{self.band}"


def _check_latlon(lat: float, lon: float) -> tuple[float, float]:
    lat, lon = float(lat), float(lon)
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ConfigError(f"latitude/longitude must be finite, got {lat}, {lon}")
    if not UTM_MIN_LATITUDE <= lat <= UTM_MAX_LATITUDE:
        raise ConfigError(f"latitude {lat} outside the UTM range [{UTM_MIN_LATITUDE}, {UTM_MAX_LATITUDE}]")
    if not -180.0 <= lon <= 180.0:
        raise ConfigError(f"longitude {lon} outside [-180, 180]")
    return lat, lon


def utm_zone(lat: float, lon: float) -> int:
    """Zone number 1-60 for a position, with the Norway and Svalbard exceptions."""
    lat, lon = _check_latlon(lat, lon)
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        return 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37
    return zone


def latitude_band(lat: float) -> str:
    """Latitude band letter C-X (X spans 72-84 degrees north)."""
    lat, _ = _check_latlon(lat, 0.0)
    return _BANDS[min(int((lat - UTM_MIN_LATITUDE) // 8.0), len(_BANDS) - 1)]


def wgs84_to_utm(lat: float, lon: float, zone_number: int | None = None) -> UtmCoordinate:
    """UTM coordinates of a WGS84 position (degrees); ``zone_number`` forces a zone."""
    lat, lon = _check_latlon(lat, lon)
    zone = utm_zone(lat, lon) if zone_number is None else int(zone_number)
    if not 1 <= zone <= 60:
        raise ConfigError(f"UTM zone must be 1-60, got {zone}")
    lon0 = (zone - 1) * 6.0 - 180.0 + 3.0
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    phi, lam = math.radians(lat), math.radians(dlon)
    sin_phi = math.sin(phi)
    t = math.sinh(math.atanh(sin_phi) - _E * math.atanh(_E * sin_phi))  # tan of the conformal latitude
    xi_p = math.atan2(t, math.cos(lam))
    eta_p = math.atanh(math.sin(lam) / math.sqrt(1.0 + t * t))
    xi, eta = xi_p, eta_p
    for j, a in enumerate(_ALPHA, start=1):
        xi += a * math.sin(2 * j * xi_p) * math.cosh(2 * j * eta_p)
        eta += a * math.cos(2 * j * xi_p) * math.sinh(2 * j * eta_p)
    easting = FALSE_EASTING + K0 * _A * eta
    northing = K0 * _A * xi + (FALSE_NORTHING_SOUTH if lat < 0 else 0.0)
    return UtmCoordinate(easting, northing, zone, latitude_band(lat))


def utm_to_wgs84(easting: float, northing: float, zone_number: int, northern: bool = True) -> tuple[float, float]:
    """(latitude, longitude) in degrees of a UTM position."""
    if not 1 <= int(zone_number) <= 60:
        raise ConfigError(f"UTM zone must be 1-60, got {zone_number}")
    xi = (northing - (0.0 if northern else FALSE_NORTHING_SOUTH)) / (K0 * _A)
    eta = (easting - FALSE_EASTING) / (K0 * _A)
    xi_p, eta_p = xi, eta
    for j, b in enumerate(_BETA, start=1):
        xi_p -= b * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
        eta_p -= b * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
    tau_p = math.sin(xi_p) / math.sqrt(math.sinh(eta_p) ** 2 + math.cos(xi_p) ** 2)
    tau = tau_p  # Newton iteration for tan(phi) from tan of the conformal latitude
    for _ in range(8):
        sigma = math.sinh(_E * math.atanh(_E * tau / math.sqrt(1.0 + tau * tau)))
        tau_i = tau * math.sqrt(1.0 + sigma * sigma) - sigma * math.sqrt(1.0 + tau * tau)
        step = ((tau_p - tau_i) / math.sqrt(1.0 + tau_i * tau_i)
                * (1.0 + (1.0 - _E**2) * tau * tau) / ((1.0 - _E**2) * math.sqrt(1.0 + tau * tau)))
        tau += step
        if abs(step) < 1e-14:
            break
    lon0 = (int(zone_number) - 1) * 6.0 - 180.0 + 3.0
    lam = math.atan2(math.sinh(eta_p), math.cos(xi_p))
    return math.degrees(math.atan(tau)), (lon0 + math.degrees(lam) + 180.0) % 360.0 - 180.0
