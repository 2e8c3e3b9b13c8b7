using System.CommandLine;

namespace Bert.Cli.Commands;

/// <summary>`bert info --preset NAME`: the parameter table summary and total.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "model preset: tiny, mini, small, medium, base, large", DefaultValueFactory = _ => "base" };
        var cmd = new Command("info", "print a preset's parameter table and total") { preset };
        cmd.SetAction(r =>
        {
            Console.WriteLine($"preset {r.GetValue(preset)}: (model presets arrive with the generator)");
            return 0;
        });
        return cmd;
    }
}
