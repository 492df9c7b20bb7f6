"""``linker_atom``'s ``lib.exception``: ``VqlError`` (the atom's, ``errors.py``), its
messages in Chinese (``VQL_MESSAGE_MAP``) and its status constants (``SUCCESS``, ``FAIL``).

The bodies' ``msg`` are the English messages of ``errors.ERRORS``; pass
``VQL_MESSAGE_MAP[code]`` as ``msg`` to send these. ``VqlError(status_code, detail)``
still binds: ``status_code`` and ``detail`` are ``linker_atom``'s names of ``code`` and
``msg``.
"""

from ..errors import ERRORS, ErrorKind, VqlError

__all__ = ["ERRORS", "FAIL", "SUCCESS", "VQL_MESSAGE_MAP", "ErrorKind", "VqlError"]

SUCCESS = 200
FAIL = 1
VQL_MESSAGE_MAP: dict[int, str] = {
    500: "未知的错误",
    501: "图片错误：无法读取",
    502: "图片错误：图片损坏",
    503: "图片错误：无法获取",
    504: "图片错误：无法识别",
    505: "图片错误：不存在的key",
    506: "图片错误：无法连接数据库",
    511: "算子错误：算子处理失败",
    512: "算子错误：显存不足",
    513: "算子错误：模型不匹配",
    514: "算子错误：未找到模型文件",
    515: "算子错误：超过重试次数，无法访问地址",
    516: "算子错误：错误的地址",
    517: "算子错误：错误的请求格式",
    518: "算子错误：非法的算子地址",
    519: "算子错误：不匹配的硬件",
    520: "算子错误: 模型文件损坏",
    521: "算子错误: 磁盘空间不足",
    550: "IBase错误",
    600: "低代码程序错误：未知错误",
    601: "低代码程序错误：程序超时",
    602: "低代码程序错误：非法操作",
    603: "低代码程序错误：重复定义的变量",
    604: "低代码程序错误：代码错误",
    700: "鉴权失败: 缺少鉴权信息",
    701: "鉴权失败: 无权调用",
    702: "鉴权失败: 无法获取",
    703: "鉴权失败: 非法鉴权码",
}
