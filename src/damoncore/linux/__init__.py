"""Thin, tested wrappers over Linux interfaces; each module has one job.

migrate (move_pages), pagemap, kpageflags, page_idle, madvise (process_madvise), perf (page-fault
sampling).  Import the submodule you need; ``migrate`` needs the compiled ``_move_pages``.
"""
