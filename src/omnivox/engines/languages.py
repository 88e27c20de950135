"""The languages Whisper hears, by ISO 639-1 code, with the English names OpenAI gives
them (``verbose_json`` reports ``"language": "english"``).

``LANGUAGES`` is in Whisper's own order, the order of its language tokens: a model that
knows ``n`` languages knows the first ``n`` (Cantonese, the last, came with large-v3).
``language_name`` is the name of a code, ``language_code`` the code of a name (or of a
code); what either does not know is returned as it is (lower-cased, by ``language_code``).

This module is shared by the engines; it knows nothing of any model.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES: Mapping[str, str] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}


def language_name(code: str) -> str:
    """The lower-case English name of ``code`` ("en" -> "english"); ``code`` if unknown."""
    return LANGUAGES.get(code.lower(), code)


def language_code(name: str) -> str:
    """The ISO 639-1 code of a language's English name or code ("English" -> "en",
    "en" -> "en"); ``name`` lower-cased if unknown."""
    key = name.strip().lower()
    return key if key in LANGUAGES else _CODES.get(key, key)


_CODES: Mapping[str, str] = {name: code for code, name in LANGUAGES.items()}


def whisper_languages(n_languages: int) -> tuple[str, ...]:
    """The codes a Whisper model with ``n_languages`` language tokens knows."""
    return tuple(LANGUAGES)[:n_languages]
