// Subcommands of the kvarn CLI; each file cmd_*.cc registers one on the CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace kvarn::cli {

// A subcommand's runner, called after parsing when that subcommand was chosen; returns the
// process exit code.
using Runner = std::function<int()>;

Runner AddCodecCommand(CLI::App& app);
Runner AddRunCommand(CLI::App& app);
Runner AddPplCommand(CLI::App& app);
Runner AddTokenizeCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddEvalCommand(CLI::App& app);
Runner AddAttnErrorCommand(CLI::App& app);
Runner AddServeCommand(CLI::App& app);

}  // namespace kvarn::cli
